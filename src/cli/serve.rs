//! `airlock serve`: the production process. With `--nats` it takes commands from the NATS intake stream, decides and
//! appends them to the JetStream event log, projects the log into SQLite and answers case queries; without it, it
//! serves the embedded store of the data directory (which `airlock submit` and the other commands share). In both
//! modes it runs the timers that drive cooling-off and expiry and, with `--http`, the owners' verification page and
//! cancel links. SIGTERM or SIGINT stops it gracefully: no new command is pulled, commands in flight finish and are
//! acknowledged, and nothing unfinished is acknowledged.

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
    /// The NATS server (or cluster member) to use, for example nats://127.0.0.1:4222. Without it, airlock serves the
    /// embedded store in the data directory.
    #[arg(long, env = "AIRLOCK_NATS_URL")]
    pub nats: Option<String>,
    /// The nkey seed file to connect to NATS with, as `airlock nats-config` wrote it (airlock's own, seeds/airlock.nk).
    #[arg(long, env = "AIRLOCK_NATS_NKEY", value_name = "FILE")]
    pub nats_nkey: Option<PathBuf>,
    /// Where the projection, the embedded account directory, the outbox and the key file live.
    #[arg(long, env = "AIRLOCK_DATA_DIR", default_value = "airlock-data")]
    pub data_dir: PathBuf,
    /// Replicas of the streams airlock creates: 1 for one server, 3 for a cluster.
    #[arg(long, env = "AIRLOCK_REPLICAS", default_value_t = 1)]
    pub replicas: usize,
    /// Commands decided at once.
    #[arg(long, env = "AIRLOCK_IN_FLIGHT", default_value_t = 64)]
    pub in_flight: usize,
    /// A folder of policies (airlock.cedarschema, default.cedar) to decide with instead of the shipped ones; airlock
    /// refuses to start if any policy fails to parse or validate.
    #[arg(long, env = "AIRLOCK_POLICIES")]
    pub policies: Option<PathBuf>,
    /// How often the timers look for cases whose cooling-off or time limit has passed.
    #[arg(long, env = "AIRLOCK_TICK", default_value = "1s", value_parser = humantime::parse_duration)]
    pub tick: Duration,
    /// Serve the owners' verification page, its JSON endpoint and the cancel links on this address, for example
    /// 127.0.0.1:8080 (port 0 picks a free port; the address is printed).
    #[arg(long, env = "AIRLOCK_HTTP")]
    pub http: Option<std::net::SocketAddr>,
    /// The address owners reach the page at, used in the links airlock sends (default: http://<--http address>).
    #[arg(long, env = "AIRLOCK_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Send email through this mail server instead of the embedded outbox, for example
    /// smtps://airlock@mail.example.com?from=recovery@example.com (smtp:// only to loopback). Phone destinations stay
    /// in the outbox. Prefer the environment variable: a password in a URL shows in process listings.
    #[arg(long, env = "AIRLOCK_SMTP_URL", hide_env_values = true)]
    pub smtp: Option<String>,
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
    // Bound before anything else starts, so a taken port is a clear startup error and port 0 is known at once.
    let http = match args.http {
        Some(address) => Some(
            tokio::net::TcpListener::bind(address)
                .await
                .map_err(|error| anyhow::anyhow!("cannot listen on {address}: {error}"))?,
        ),
        None => None,
    };
    let public_url = match (&args.public_url, &http) {
        (Some(url), _) => url.trim_end_matches('/').to_string(),
        (None, Some(listener)) => format!("http://{}", listener.local_addr()?),
        (None, None) => crate::service::PUBLIC_URL_DEFAULT.to_string(),
    };
    std::fs::create_dir_all(&args.data_dir)
        .map_err(|error| anyhow::anyhow!("cannot create the data directory {}: {error}", args.data_dir.display()))?;
    // The HTTP intake's API keys (`airlock api-key`), beside the other files of the data directory.
    let http = match http {
        Some(listener) => {
            let path = args.data_dir.join(crate::http::api_keys::FILE);
            let keys = crate::http::api_keys::ApiKeys::open(&path)
                .map_err(|error| anyhow::anyhow!("cannot open the API keys in {}: {error}", path.display()))?;
            Some((listener, Arc::new(keys)))
        }
        None => None,
    };
    let keys = Keys::load_or_create(&args.data_dir.join("airlock.key"))
        .map_err(|error| anyhow::anyhow!("cannot use the key file in {}: {error}", args.data_dir.display()))?;
    let smtp = match &args.smtp {
        Some(url) => {
            let config = crate::notify::smtp::SmtpConfig::parse(url)
                .map_err(|error| anyhow::anyhow!("--smtp refused: {error}"))?;
            Some(std::sync::Arc::new(
                crate::notify::smtp::SmtpNotifier::new(config)
                    .map_err(|error| anyhow::anyhow!("--smtp refused: {error}"))?,
            ))
        }
        None => None,
    };
    let with_smtp = |outbox: Arc<dyn crate::notify::Notifier>| -> Arc<dyn crate::notify::Notifier> {
        match &smtp {
            Some(smtp) => Arc::new(crate::notify::ByKind { email: smtp.clone(), other: outbox }),
            None => outbox,
        }
    };
    let (stop, shutdown) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    let client = match &args.nats {
        Some(url) => {
            let client = crate::nats::connect_seeded(url, "airlock", args.nats_nkey.as_deref()).await?;
            let NatsMode { mut service, projection, events, context, intake: intake_config } =
                nats_mode::open(&client, &args.data_dir, args.replicas, args.in_flight, keys, policy.clone()).await?;
            service.public_url = public_url.clone();
            service.notifier = with_smtp(service.notifier.clone());
            let service = Arc::new(service);
            tasks.spawn(named("intake", run_intake(service.clone(), context, intake_config.clone(), shutdown.clone())));
            tasks
                .spawn(named("queries", run_queries(service.clone(), client.clone(), intake_config, shutdown.clone())));
            tasks.spawn(named(
                "projector",
                run_projector(projection, events, projector_name(&args.data_dir)?, shutdown.clone()),
            ));
            spawn_shared(&mut tasks, service, http, args.tick, &shutdown);
            Some(client)
        }
        None => {
            let mut embedded = crate::cli::embedded::open(&args.data_dir, crate::clock::process_clock(), keys)
                .map_err(|error| {
                    anyhow::anyhow!("cannot open the embedded store in {}: {error:#}", args.data_dir.display())
                })?;
            embedded.service.public_url = public_url.clone();
            embedded.service.notifier = with_smtp(embedded.service.notifier.clone());
            embedded.service.policy = policy.clone();
            spawn_shared(&mut tasks, Arc::new(embedded.service), http, args.tick, &shutdown);
            None
        }
    };
    tracing::info!(version = policy.version(), "policies loaded");
    let mode = args.nats.as_deref().unwrap_or("the embedded store");
    tracing::info!(%mode, data_dir = %args.data_dir.display(), %public_url, "airlock serving");
    eprintln!("airlock serving on {mode} (data in {}); owners' page at {public_url}", args.data_dir.display());
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
    if let Some(client) = client {
        client.flush().await.ok();
    }
    match failure {
        Some(Ok(Err(error))) => Err(error),
        Some(Err(panic)) => Err(anyhow::anyhow!("a task panicked: {panic}")),
        Some(Ok(Ok(()))) | None => Ok(()),
    }
}

/// The projector's durable consumer is named after the data directory it projects into: each airlock process keeps
/// its own projection and must see every event, while a restart of the same process resumes where it stopped. (One
/// shared name would split the events between processes like a work queue.)
fn projector_name(data_dir: &std::path::Path) -> anyhow::Result<String> {
    use sha2::{Digest, Sha256};
    let path = std::fs::canonicalize(data_dir)
        .map_err(|error| anyhow::anyhow!("cannot resolve the data directory {}: {error}", data_dir.display()))?;
    let digest = Sha256::digest(path.to_string_lossy().as_bytes());
    Ok(format!("airlock-projector-{}", &hex::encode(digest)[..16]))
}

/// What both modes run: the timers and, when asked for, the owners' web endpoint.
fn spawn_shared<L: crate::log::EventLog + 'static>(
    tasks: &mut tokio::task::JoinSet<anyhow::Result<()>>,
    service: Arc<Service<L>>,
    http: Option<(tokio::net::TcpListener, Arc<crate::http::api_keys::ApiKeys>)>,
    tick: Duration,
    shutdown: &watch::Receiver<bool>,
) {
    if let Some((listener, keys)) = http {
        if let Ok(address) = listener.local_addr() {
            eprintln!("airlock verification page on http://{address}");
        }
        let mut stopped = shutdown.clone();
        let signal = async move {
            let _ = stopped.changed().await;
        };
        tasks.spawn(named("http", crate::http::serve(listener, service.clone(), keys, signal)));
    }
    tasks.spawn(named("timers", timers(service, tick, shutdown.clone())));
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
