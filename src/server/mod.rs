//! The production process as a library: [`run`] builds the service a typed [`Config`] describes (NATS mode or the
//! embedded store) and runs every front door, the projector and the timers until told to stop. `airlock serve`
//! only turns its command line into a `Config` and calls it; [`nats`] and [`embedded`] assemble the service of each
//! mode for it and for the other commands.

pub mod embedded;
pub mod health;
pub mod nats;

use crate::intake::nats::{run_intake, run_queries};
use crate::keys::Keys;
use crate::projection::projector::run_projector;
use crate::service::Service;
use health::Health;
use nats::NatsMode;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Everything `run` needs, already checked: policies loaded, the mail server's address parsed.
pub struct Config {
    /// NATS mode; the embedded store of `data_dir` without it.
    pub nats: Option<NatsConfig>,
    /// Where the projection, the embedded account directory, the outbox and the key file live.
    pub data_dir: PathBuf,
    /// Replicas of the streams airlock creates: 1 for one server, 3 for a cluster.
    pub replicas: usize,
    /// Commands decided at once.
    pub in_flight: usize,
    pub policy: Arc<crate::policy::Engine>,
    /// How often the timers look for due cases.
    pub tick: Duration,
    /// Where to serve the owners' page, the HTTP intake and `/healthz`.
    pub http: Option<SocketAddr>,
    /// The address owners reach the page at (default: http://<http address>).
    pub public_url: Option<String>,
    /// Email through this mail server instead of the outbox.
    pub smtp: Option<crate::notify::smtp::SmtpConfig>,
    /// Serve `/healthz`, `/readyz` and `/metrics` here (a private address for the monitoring); the owners' page,
    /// which faces the internet, serves only `/healthz`.
    pub metrics: Option<SocketAddr>,
    /// How many events the projector may be behind the log before `/readyz` says not ready.
    pub ready_lag: u64,
    /// The company's directory adapter (`docs/directory-adapter.md`); the embedded directory without it.
    pub directory: Option<DirectoryConfig>,
    /// How often a directory without per-destination ages is read whole (`Service::sync_directory`).
    pub directory_sync: Duration,
    /// The company's OpenID Connect provider, where owners prove a second factor by signing in (needs `http`).
    pub oidc: Option<crate::oidc::OidcConfig>,
    /// The reviewers' and operators' console on `http` (needs `oidc`).
    pub console: Option<crate::http::console::ConsoleConfig>,
    /// The campaign checks' thresholds (issue 20).
    pub campaigns: crate::core::campaign::CampaignSettings,
    /// Where text messages to phones go.
    pub sms: SmsConfig,
    /// The company's webhook endpoints, each sent every case and alert event (issue 20, item 2), and how hard each
    /// is tried.
    pub webhooks: Vec<crate::outward::webhook::Endpoint>,
    pub webhook_retry: crate::outward::webhook::Retry,
    /// The integrators whose consumers of `AIRLOCK_NOTIFY` airlock creates (NATS mode): their keys may only read them.
    pub integrators: Vec<String>,
}

/// Where `serve` sends text messages to phones (issue 20, item 3).
#[derive(Clone, Debug)]
pub enum SmsConfig {
    /// The SMS provider's endpoint, and the secrets its requests are signed with.
    Provider { url: String, secrets: Vec<crate::directory::http::Secret> },
    /// The embedded outbox, because the operator asked for it (`--sms-outbox`).
    Outbox,
    /// Nowhere: a phone's message fails, saying how to configure a channel.
    None,
}

impl SmsConfig {
    /// The channel, for `config check` and the start-up log.
    pub fn describe(&self) -> String {
        match self {
            SmsConfig::Provider { url, .. } => match crate::notify::sms::provider_url(url) {
                Ok(url) => format!("the SMS provider at {}", url.host_str().unwrap_or("?")),
                Err(error) => error,
            },
            SmsConfig::Outbox => "the embedded outbox (--sms-outbox)".into(),
            SmsConfig::None => "nowhere: no SMS channel configured (--sms-url, or --sms-outbox)".into(),
        }
    }
}

/// The company's directory: an HTTP adapter and the secrets airlock signs its requests with, or a SCIM 2.0 service
/// and the bearer token airlock presents.
pub enum DirectoryConfig {
    Http { url: String, secrets: Vec<crate::directory::http::Secret> },
    Scim { url: String, token: crate::directory::scim::Token },
}

/// The NATS server and the nkey seed airlock connects with.
pub struct NatsConfig {
    pub url: String,
    pub nkey: Option<PathBuf>,
}

/// Builds the service `config` describes and runs it until `stop_when` resolves (or a task fails): every front door,
/// the projector and the timers. When `stop_when` resolves, no new command is pulled, commands in flight finish and
/// are acknowledged, and nothing unfinished is acknowledged.
pub async fn run(config: Config, stop_when: impl Future<Output = ()>) -> anyhow::Result<()> {
    let policy = config.policy.clone();
    // Bound before anything else starts, so a taken port is a clear startup error and port 0 is known at once.
    let bind = |address: SocketAddr| async move {
        tokio::net::TcpListener::bind(address)
            .await
            .map_err(|error| anyhow::anyhow!("cannot listen on {address}: {error}"))
    };
    let http = match config.http {
        Some(address) => Some(bind(address).await?),
        None => None,
    };
    let probes = match config.metrics {
        Some(address) => Some(bind(address).await?),
        None => None,
    };
    let public_url = match (&config.public_url, &http) {
        (Some(url), _) => url.trim_end_matches('/').to_string(),
        (None, Some(listener)) => format!("http://{}", listener.local_addr()?),
        (None, None) => crate::service::PUBLIC_URL_DEFAULT.to_string(),
    };
    std::fs::create_dir_all(&config.data_dir).map_err(|error| {
        anyhow::anyhow!("--data-dir: cannot create the data directory {}: {error}", config.data_dir.display())
    })?;
    // The HTTP intake's API keys (`airlock api-key`), beside the other files of the data directory.
    let http = match http {
        Some(listener) => {
            let path = config.data_dir.join(crate::http::api_keys::FILE);
            let keys = crate::http::api_keys::ApiKeys::open(&path)
                .map_err(|error| anyhow::anyhow!("cannot open the API keys in {}: {error}", path.display()))?;
            // The provider is reached before anything is served: a wrong issuer is a clear startup error.
            let provider = match &config.oidc {
                Some(oidc) => {
                    let provider = crate::oidc::Provider::connect(oidc.clone(), &public_url)
                        .await
                        .map_err(|error| anyhow::anyhow!("--oidc-issuer refused: {error}"))?;
                    tracing::info!(issuer = provider.issuer(), "identity provider connected for step-up sign-in");
                    let console = match &config.console {
                        Some(console) => Some(Arc::new(
                            crate::http::console::Console::open(console.clone(), &path).map_err(|error| {
                                anyhow::anyhow!("cannot open the console's sessions in {}: {error}", path.display())
                            })?,
                        )),
                        None => None,
                    };
                    Some(crate::http::SignIns { provider: Arc::new(provider), console })
                }
                None => None,
            };
            Some((listener, Arc::new(keys), provider))
        }
        None if config.oidc.is_some() => {
            anyhow::bail!("--oidc-issuer needs --http: owners sign in from airlock's page")
        }
        None => None,
    };
    let sign_in_step_up = config.oidc.is_some();
    if !config.policy.sees_open_alerts() {
        tracing::warn!(
            "the policies' schema does not declare open_alerts (written before campaign alerts): alerts are raised, \
             but no request is held back by one; add open_alerts from the shipped policies/airlock.cedarschema"
        );
    }
    let keys = Keys::load_or_create(&config.data_dir.join("airlock.key"))
        .map_err(|error| anyhow::anyhow!("cannot use the key file in {}: {error}", config.data_dir.display()))?;
    let smtp = match &config.smtp {
        Some(smtp) => Some(Arc::new(
            crate::notify::smtp::SmtpNotifier::new(smtp.clone())
                .map_err(|error| anyhow::anyhow!("--smtp refused: {error}"))?,
        )),
        None => None,
    };
    let phone: Option<Arc<dyn crate::notify::Notifier>> = match &config.sms {
        SmsConfig::Provider { url, secrets } => Some(Arc::new(
            crate::notify::sms::SmsWebhook::new(url, secrets.clone())
                .map_err(|error| anyhow::anyhow!("--sms-url refused: {error}"))?,
        )),
        SmsConfig::Outbox => None,
        SmsConfig::None => Some(Arc::new(crate::notify::sms::NoSmsChannel)),
    };
    let email_channel = if smtp.is_some() { "the mail server (--smtp)" } else { "the embedded outbox" };
    match &config.sms {
        SmsConfig::None => tracing::warn!(
            email = email_channel,
            phone = %config.sms.describe(),
            "where notices go: text messages to phones are NOT sent (no --sms-url; --sms-outbox keeps them in the outbox)"
        ),
        SmsConfig::Provider { .. } | SmsConfig::Outbox => {
            tracing::info!(email = email_channel, phone = %config.sms.describe(), "where notices go")
        }
    }
    // Every kind its own channel: email through the mail server (or the outbox), phones through the SMS provider, the
    // outbox only when asked for, or nowhere.
    let with_smtp = |outbox: Arc<dyn crate::notify::Notifier>| -> Arc<dyn crate::notify::Notifier> {
        let email = match &smtp {
            Some(smtp) => smtp.clone() as Arc<dyn crate::notify::Notifier>,
            None => outbox.clone(),
        };
        Arc::new(crate::notify::ByKind { email, phone: phone.clone().unwrap_or(outbox) })
    };
    // The company's directory, reached (and its capabilities read) before anything is served.
    let adapter: Option<Arc<dyn crate::directory::AccountDirectory>> = match &config.directory {
        Some(directory) => {
            let adapter = connect_directory(directory).await?;
            tracing::info!(capabilities = ?adapter.capabilities(), "directory connected");
            Some(adapter)
        }
        None => None,
    };
    let webhooks = config
        .webhooks
        .iter()
        .map(|endpoint| crate::outward::webhook::Webhook::new(endpoint.clone(), config.webhook_retry.clone()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| anyhow::anyhow!("--webhook refused: {error}"))?;
    let (stop, shutdown) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    let client = match &config.nats {
        Some(NatsConfig { url, nkey }) => {
            let client = crate::nats::connect_seeded(url, "airlock", nkey.as_deref()).await?;
            let NatsMode { mut service, projection, events, context, intake: intake_config } =
                nats::open(&client, &config.data_dir, config.replicas, config.in_flight, keys, policy.clone()).await?;
            service.public_url = public_url.clone();
            service.sign_in_step_up = sign_in_step_up;
            service.campaigns = crate::service::alerts::Campaigns::new(config.campaigns.clone());
            service.notifier = with_smtp(service.notifier.clone());
            if let Some(adapter) = &adapter {
                service.directory = adapter.clone();
            }
            let service = Arc::new(service);
            let health = Health {
                nats: Some(client.clone()),
                events: Some(events.clone()),
                projection: service.projection.clone(),
                max_lag: config.ready_lag,
            };
            spawn_probes(&mut tasks, health, probes, &shutdown);
            // Before intake: a sink configured for the first time starts at the log's end, and this run's events come
            // after it.
            spawn_events_out_nats(
                &mut tasks,
                (&service, &client),
                (&context, &events),
                (config.replicas, &config.integrators),
                webhooks,
                &shutdown,
            )
            .await?;
            tasks.spawn(named("intake", run_intake(service.clone(), context, intake_config.clone(), shutdown.clone())));
            let (listening, queries_listen) = tokio::sync::oneshot::channel();
            let queries = run_queries(service.clone(), client.clone(), intake_config, shutdown.clone(), listening);
            tasks.spawn(named("queries", queries));
            tasks.spawn(named(
                "projector",
                run_projector(projection, events, projector_name(&config.data_dir)?, shutdown.clone()),
            ));
            spawn_shared(&mut tasks, service, http, (config.tick, config.directory_sync), &shutdown);
            // Serving is announced once a query is answered: before, a desk's status query finds no responder. A
            // query service that fails to start ends its task, and the failure is reported below.
            let _ = queries_listen.await;
            Some(client)
        }
        None => {
            let mut embedded = crate::server::embedded::open(&config.data_dir, crate::clock::process_clock(), keys)
                .map_err(|error| {
                    anyhow::anyhow!("cannot open the embedded store in {}: {error:#}", config.data_dir.display())
                })?;
            embedded.service.public_url = public_url.clone();
            embedded.service.sign_in_step_up = sign_in_step_up;
            embedded.service.campaigns = crate::service::alerts::Campaigns::new(config.campaigns.clone());
            embedded.service.notifier = with_smtp(embedded.service.notifier.clone());
            embedded.service.policy = policy.clone();
            if let Some(adapter) = &adapter {
                embedded.service.directory = adapter.clone();
            }
            // A projection started afresh (set aside at an upgrade, or lost) is rebuilt before anything is served.
            embedded.service.catch_up_projection().await.map_err(|error| {
                anyhow::anyhow!("cannot bring the projection in {} up to the log: {error}", config.data_dir.display())
            })?;
            let health = Health {
                nats: None,
                events: None,
                projection: embedded.service.projection.clone(),
                max_lag: config.ready_lag,
            };
            spawn_probes(&mut tasks, health, probes, &shutdown);
            let service = Arc::new(embedded.service);
            if !webhooks.is_empty() {
                let path = config.data_dir.join("outward.db");
                let store = Arc::new(crate::outward::feed::OutwardStore::open(&path).map_err(|error| {
                    anyhow::anyhow!("cannot open the webhooks' positions in {}: {error}", path.display())
                })?);
                let last = crate::log::EventLog::last_sequence(&service.log)
                    .await
                    .map_err(|error| anyhow::anyhow!("{error}"))?;
                for webhook in &webhooks {
                    store.start(webhook.endpoint(), last).map_err(|error| {
                        anyhow::anyhow!("cannot keep the webhooks' positions in {}: {error}", path.display())
                    })?;
                }
                for webhook in webhooks {
                    let feed = crate::outward::feed::run_embedded(
                        service.clone(),
                        store.clone(),
                        webhook,
                        config.tick,
                        shutdown.clone(),
                    );
                    tasks.spawn(named("webhook", feed));
                }
            }
            spawn_shared(&mut tasks, service, http, (config.tick, config.directory_sync), &shutdown);
            None
        }
    };
    tracing::info!(version = policy.version(), "policies loaded");
    let mode = config.nats.as_ref().map_or("the embedded store", |nats| nats.url.as_str());
    tracing::info!(%mode, data_dir = %config.data_dir.display(), %public_url, "airlock serving");
    crate::observe::announce(&format!(
        "airlock serving on {mode} (data in {}); owners' page at {public_url}",
        config.data_dir.display()
    ));
    let mut failure = None;
    tokio::select! {
        _ = stop_when => tracing::info!("stopping: finishing work in flight"),
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

/// Reaches the company's directory and reads what it can do. Errors name the URL only without credentials (the
/// URL rules refuse any).
async fn connect_directory(directory: &DirectoryConfig) -> anyhow::Result<Arc<dyn crate::directory::AccountDirectory>> {
    let clock = crate::clock::process_clock();
    Ok(match directory {
        DirectoryConfig::Http { url, secrets } => Arc::new(
            crate::directory::http::HttpDirectory::connect(url, secrets.clone(), clock)
                .await
                .map_err(|error| anyhow::anyhow!("the directory adapter at {url}: {error}"))?,
        ),
        DirectoryConfig::Scim { url, token } => Arc::new(
            crate::directory::scim::ScimDirectory::connect(url, token.clone(), clock)
                .await
                .map_err(|error| anyhow::anyhow!("the SCIM service at {url}: {error}"))?,
        ),
    })
}

/// Events out in NATS mode (ADR 27): the stream `AIRLOCK_NOTIFY`, its publisher, the integrators' consumers of it, and
/// one feed per webhook endpoint, each a durable consumer of the log shared with the deployment's other processes.
/// Every consumer exists before this returns, so before intake starts.
async fn spawn_events_out_nats(
    tasks: &mut tokio::task::JoinSet<anyhow::Result<()>>,
    (service, client): (&Arc<Service<crate::log::jetstream::JetStreamLog>>, &async_nats::Client),
    (context, events): (&async_nats::jetstream::Context, &async_nats::jetstream::stream::Stream),
    (replicas, integrators): (usize, &[String]),
    webhooks: Vec<crate::outward::webhook::Webhook>,
    shutdown: &watch::Receiver<bool>,
) -> anyhow::Result<()> {
    use crate::outward::feed::{DeadLetters, PUBLISH_BATCH, Sink, nats_consumer, run_nats};
    use crate::outward::nats::{PUBLISHER_CONSUMER, Publisher, ensure_integrator, ensure_stream};
    ensure_stream(context, replicas).await.map_err(|error| anyhow::anyhow!("{error}"))?;
    for integrator in integrators {
        ensure_integrator(context, integrator).await.map_err(|error| anyhow::anyhow!("{error}"))?;
    }
    let consumer =
        nats_consumer(events, PUBLISHER_CONSUMER, PUBLISH_BATCH).await.map_err(|error| anyhow::anyhow!("{error}"))?;
    let publisher = Sink::Notify(Publisher::new(context.clone(), replicas));
    let feed = run_nats(service.clone(), client.clone(), consumer, PUBLISH_BATCH, publisher, shutdown.clone());
    tasks.spawn(named("events out", feed));
    for webhook in webhooks {
        let name = format!("airlock-{}", webhook.endpoint().name());
        // One commit in flight: the endpoint gets the events in log order, whichever process sends them.
        let consumer = nats_consumer(events, &name, 1).await.map_err(|error| anyhow::anyhow!("{error}"))?;
        let sink = Sink::Webhook(webhook, DeadLetters::Nats(Box::new(context.clone())));
        tasks.spawn(named("webhook", run_nats(service.clone(), client.clone(), consumer, 1, sink, shutdown.clone())));
    }
    Ok(())
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

/// The probes (`/healthz`, `/readyz`, `/metrics`), on their own listener when `--metrics` gave one; never on the
/// owners' page, which faces the internet and keeps only `/healthz`: counts of cases and decisions, scraped before
/// and after a request, would tell an outsider what the answers hide (THREATS 8, 18).
fn spawn_probes(
    tasks: &mut tokio::task::JoinSet<anyhow::Result<()>>,
    health: Health,
    probes: Option<tokio::net::TcpListener>,
    shutdown: &watch::Receiver<bool>,
) {
    let Some(listener) = probes else { return };
    if let Ok(address) = listener.local_addr() {
        crate::observe::announce(&format!("airlock probes and metrics on http://{address}"));
    }
    let mut stopped = shutdown.clone();
    let app = health::router(Arc::new(health));
    tasks.spawn(named("probes", async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stopped.changed().await;
            })
            .await
    }));
}

/// The owners' page listener and its API keys.
type HttpListener = (tokio::net::TcpListener, Arc<crate::http::api_keys::ApiKeys>, Option<crate::http::SignIns>);

/// What both modes run: the timers and, when asked for, the owners' web endpoint.
fn spawn_shared<L: crate::log::EventLog + 'static>(
    tasks: &mut tokio::task::JoinSet<anyhow::Result<()>>,
    service: Arc<Service<L>>,
    http: Option<HttpListener>,
    (tick, sync): (Duration, Duration),
    shutdown: &watch::Receiver<bool>,
) {
    if let Some((listener, keys, sign_ins)) = http {
        if let Ok(address) = listener.local_addr() {
            crate::observe::announce(&format!("airlock verification page on http://{address}"));
        }
        let mut stopped = shutdown.clone();
        let signal = async move {
            let _ = stopped.changed().await;
        };
        tasks.spawn(named("http", crate::http::serve(listener, service.clone(), (keys, sign_ins), signal)));
    }
    // Every task runs until shutdown (one that ends stops the server): only a directory without ages is synced.
    if !service.directory.capabilities().per_factor_ages {
        tasks.spawn(named("directory sync", directory_sync(service.clone(), sync, shutdown.clone())));
    }
    tasks.spawn(named("timers", timers(service.clone(), tick, shutdown.clone())));
    tasks.spawn(named("campaign alerts", campaign_alerts(service, tick, shutdown.clone())));
}

/// The campaign alerts the projection's new hits call for (issue 20, ADR 25), every `tick`, beside the timers so that
/// neither waits for the other.
async fn campaign_alerts<L: crate::log::EventLog>(
    service: Arc<Service<L>>,
    tick: Duration,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {
                if let Err(error) = service.reconcile_alerts().await {
                    tracing::warn!(%error, "campaign alerts: will retry on the next tick");
                }
            }
            _ = shutdown.changed() => return Ok(()),
        }
    }
}

/// Reads the whole directory at start and every `every`, when it keeps no age per destination. A failed sync is
/// logged and tried again at the next interval: requests are still served, each account dated when it is read.
async fn directory_sync<L: crate::log::EventLog>(
    service: Arc<Service<L>>,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {
                // A sync of a large or slow directory gives way to shutdown; what it dated so far stays dated.
                let synced = tokio::select! {
                    synced = service.sync_directory() => synced,
                    _ = shutdown.changed() => return Ok(()),
                };
                match synced {
                    Ok(Some(synced)) => tracing::info!(
                        accounts = synced.accounts,
                        destinations = synced.destinations,
                        first_seen = synced.first_seen,
                        "directory synced"
                    ),
                    Ok(None) => {}
                    Err(error) => tracing::warn!(%error, "directory sync failed: will retry at the next interval"),
                }
            }
            _ = shutdown.changed() => return Ok(()),
        }
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
