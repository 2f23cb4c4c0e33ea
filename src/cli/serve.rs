//! `airlock serve`: the production process. With `--nats` it takes commands from the NATS intake stream, decides and
//! appends them to the JetStream event log, projects the log into SQLite and answers case queries; without it, it
//! serves the embedded store of the data directory (which `airlock submit` and the other commands share). In both
//! modes it runs the timers that drive cooling-off and expiry and, with `--http`, the owners' verification page and
//! cancel links. SIGTERM or SIGINT stops it gracefully: no new command is pulled, commands in flight finish and are
//! acknowledged, and nothing unfinished is acknowledged. This file only reads the command line: the process itself
//! is `crate::server::run`.

use crate::cli::exit;
use crate::server::{Config, NatsConfig};
use std::path::PathBuf;
use std::time::Duration;

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
    /// Campaign checks' thresholds (ADR 25), each CHECK=ACCOUNTS/WINDOW, comma-separated: an alert when ACCOUNTS
    /// distinct accounts show one indicator within WINDOW. Checks: destination (3/1h), destination_domain (20/1h),
    /// high_value (10/1h), phrasing (10/1h), source_network (20/1h), proof_failures (20/1h); unnamed ones keep these.
    #[arg(long, env = "AIRLOCK_CAMPAIGN", default_value = "")]
    pub campaign: String,
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
    /// Send text messages to phones through this SMS provider endpoint (https://, or http:// to loopback only): a
    /// signed JSON POST per message (docs/sms-provider.md). Needs --sms-secrets.
    #[arg(long, env = "AIRLOCK_SMS_URL", hide_env_values = true)]
    pub sms_url: Option<String>,
    /// The file of secrets airlock signs its requests to the SMS provider with, one `whsec_...` per line (several
    /// while a key is being rotated), readable by its owner only.
    #[arg(long, env = "AIRLOCK_SMS_SECRETS", value_name = "FILE")]
    pub sms_secrets: Option<std::path::PathBuf>,
    /// Keep text messages to phones in the embedded outbox (`airlock outbox`) instead of sending them: for trying
    /// airlock out. Without this or --sms-url, nothing is sent to phones.
    #[arg(long, env = "AIRLOCK_SMS_OUTBOX")]
    pub sms_outbox: bool,
    /// Send every case and alert event, redacted, as a signed JSON POST to this endpoint (https://, or http:// to
    /// loopback only; repeatable, or comma-separated in the environment): at least once, in log order, the same
    /// webhook-id on every attempt (docs/events-out.md). Needs --webhook-secrets.
    #[arg(long, env = "AIRLOCK_WEBHOOK", value_delimiter = ',', value_name = "URL")]
    pub webhook: Vec<String>,
    /// The file of secrets a --webhook's requests are signed with, one `whsec_...` per line (several while a key is
    /// being rotated), readable by its owner only. One file signs every endpoint, or give one per --webhook, in order.
    #[arg(long, env = "AIRLOCK_WEBHOOK_SECRETS", value_delimiter = ',', value_name = "FILE")]
    pub webhook_secrets: Vec<std::path::PathBuf>,
    /// Attempts per event and endpoint before it is given up as a dead letter (the endpoint's next event follows).
    #[arg(long, env = "AIRLOCK_WEBHOOK_ATTEMPTS", default_value_t = crate::outward::webhook::ATTEMPTS_DEFAULT)]
    pub webhook_attempts: usize,
    /// The longest pause between two attempts (exponential from 500 ms, plus up to as much again of jitter).
    #[arg(long, env = "AIRLOCK_WEBHOOK_BACKOFF_MAX", default_value = "10m", value_parser = humantime::parse_duration)]
    pub webhook_backoff_max: Duration,
    /// How long one attempt may take before it counts as failed.
    #[arg(long, env = "AIRLOCK_WEBHOOK_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub webhook_timeout: Duration,
    /// With --nats: create the consumer of the stream AIRLOCK_NOTIFY that the key of `airlock nats-config
    /// --integrator ID` reads (its key may read it and nothing else, nor create one). Repeatable, or comma-separated.
    #[arg(long, env = "AIRLOCK_INTEGRATOR", value_delimiter = ',', value_name = "ID")]
    pub integrator: Vec<String>,
    /// Serve /healthz, /readyz and /metrics on this address (for example 127.0.0.1:9090), a private one: the owners'
    /// page (--http) faces the internet and serves only /healthz.
    #[arg(long, env = "AIRLOCK_METRICS")]
    pub metrics: Option<std::net::SocketAddr>,
    /// /readyz says not ready while the projection is more than this many events behind the log.
    #[arg(long, env = "AIRLOCK_READY_LAG", default_value_t = crate::server::health::READY_LAG_DEFAULT)]
    pub ready_lag: u64,
    /// How to write the log on stderr: text for people, or json (one object per line) for a log collector.
    #[arg(long, env = "AIRLOCK_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Where accounts are read and changed: the embedded directory in the data directory, the company's HTTP
    /// directory adapter at --directory-url (docs/directory-adapter.md), or its identity provider's SCIM 2.0 service
    /// at --directory-url (docs/directory-scim.md).
    #[arg(long, env = "AIRLOCK_DIRECTORY", value_enum, default_value_t = DirectoryKind::Embedded)]
    pub directory: DirectoryKind,
    /// The HTTP directory adapter's address, or the SCIM service's base (such as https://idp.example/scim/v2):
    /// https://, or http:// to a loopback address only.
    #[arg(long, env = "AIRLOCK_DIRECTORY_URL")]
    pub directory_url: Option<String>,
    /// The file of secrets airlock signs its requests to the adapter with, one `whsec_...` per line (several while a
    /// key is being rotated), readable by its owner only.
    #[arg(long, env = "AIRLOCK_DIRECTORY_SECRETS", value_name = "FILE")]
    pub directory_secrets: Option<std::path::PathBuf>,
    /// How often every account of a directory that keeps no age per destination (SCIM, an adapter saying
    /// per_factor_ages false) is read, so that an address added there ages from when it appeared (also at start).
    #[arg(long, env = "AIRLOCK_DIRECTORY_SYNC", value_parser = humantime::parse_duration, default_value = "1h")]
    pub directory_sync: Duration,
    /// The file holding the bearer token airlock presents to the SCIM service, readable by its owner only.
    #[arg(long, env = "AIRLOCK_DIRECTORY_TOKEN", value_name = "FILE")]
    pub directory_token: Option<std::path::PathBuf>,
    /// The company's OpenID Connect provider (its issuer, such as https://idp.example): owners may prove the
    /// account's second factor by signing in there instead of typing an authenticator code (docs/oidc-step-up.md).
    /// Needs --http, --oidc-client-id and --oidc-client-secret; register {public URL}/oidc/callback there.
    #[arg(long, env = "AIRLOCK_OIDC_ISSUER")]
    pub oidc_issuer: Option<String>,
    /// airlock's client id at the provider.
    #[arg(long, env = "AIRLOCK_OIDC_CLIENT_ID")]
    pub oidc_client_id: Option<String>,
    /// The file holding airlock's client secret at the provider, readable by its owner only.
    #[arg(long, env = "AIRLOCK_OIDC_CLIENT_SECRET", value_name = "FILE")]
    pub oidc_client_secret: Option<std::path::PathBuf>,
    /// What a sign-in must show to count as a second factor, any one of them: amr:VALUE (RFC 8176: mfa, otp, hwk,
    /// ...) or acr:VALUE, comma-separated.
    #[arg(long, env = "AIRLOCK_OIDC_STEP_UP", default_value = crate::oidc::StepUpRule::DEFAULT)]
    pub oidc_step_up: String,
    /// Serve the reviewers' console at /console, signed in through --oidc-issuer: members of this group are
    /// reviewers (docs/console.md).
    #[arg(long, env = "AIRLOCK_CONSOLE_REVIEWER_GROUP")]
    pub console_reviewer_group: Option<String>,
    /// Members of this group are operators in the console (the kill switch).
    #[arg(long, env = "AIRLOCK_CONSOLE_OPERATOR_GROUP")]
    pub console_operator_group: Option<String>,
    /// The ID token claim listing a person's groups.
    #[arg(long, env = "AIRLOCK_CONSOLE_GROUPS_CLAIM", default_value = "groups")]
    pub console_groups_claim: String,
    /// The ID token claim naming the person, as airlock records them (letters, digits and -_.@+).
    #[arg(long, env = "AIRLOCK_CONSOLE_PERSON_CLAIM", default_value = "sub")]
    pub console_person_claim: String,
    /// Scopes the console asks for besides openid, so that the provider puts the groups in the ID token
    /// (comma-separated; empty for none).
    #[arg(long, env = "AIRLOCK_CONSOLE_SCOPES", default_value = "groups")]
    pub console_scopes: String,
}

/// The console the flags name; refused without an identity provider to sign in at.
fn console(args: &ServeArgs) -> anyhow::Result<Option<crate::http::console::ConsoleConfig>> {
    if args.console_reviewer_group.is_none() && args.console_operator_group.is_none() {
        return Ok(None);
    }
    if args.oidc_issuer.is_none() {
        anyhow::bail!("--console-reviewer-group and --console-operator-group need --oidc-issuer: people sign in there");
    }
    let named = |group: &Option<String>| group.as_ref().is_none_or(|group| !group.trim().is_empty());
    if !named(&args.console_reviewer_group) || !named(&args.console_operator_group) {
        anyhow::bail!("--console-reviewer-group and --console-operator-group name a group: not an empty one");
    }
    if args.console_person_claim.trim().is_empty() || args.console_groups_claim.trim().is_empty() {
        anyhow::bail!("--console-person-claim and --console-groups-claim name a claim");
    }
    let scopes: Vec<String> = args
        .console_scopes
        .split([',', ' '])
        .map(str::trim)
        .filter(|scope| !scope.is_empty())
        .map(str::to_string)
        .collect();
    if let Some(scope) = scopes.iter().find(|scope| !scope.bytes().all(|byte| byte.is_ascii_graphic() && byte != b'"'))
    {
        anyhow::bail!("--console-scopes: {scope:?} is not a scope");
    }
    Ok(Some(crate::http::console::ConsoleConfig {
        person_claim: args.console_person_claim.clone(),
        groups_claim: args.console_groups_claim.clone(),
        reviewer_group: args.console_reviewer_group.clone(),
        operator_group: args.console_operator_group.clone(),
        scopes,
    }))
}

/// The identity provider the flags name, its secret read; each misuse refused with the flag to fix.
fn oidc(args: &ServeArgs) -> anyhow::Result<Option<crate::oidc::OidcConfig>> {
    let step_up = crate::oidc::StepUpRule::parse(&args.oidc_step_up).map_err(|error| anyhow::anyhow!("--{error}"))?;
    match (&args.oidc_issuer, &args.oidc_client_id, &args.oidc_client_secret) {
        (None, None, None) => Ok(None),
        (Some(issuer), Some(client_id), Some(secret)) => {
            if args.http.is_none() {
                anyhow::bail!("--oidc-issuer needs --http: owners sign in from airlock's page");
            }
            crate::oidc::checked_url("--oidc-issuer", issuer).map_err(|error| anyhow::anyhow!("{error}"))?;
            let text = crate::directory::read_private_file(secret)
                .map_err(|error| anyhow::anyhow!("--oidc-client-secret refused: {error}"))?;
            let client_secret = crate::oidc::ClientSecretText::new(&text)
                .map_err(|error| anyhow::anyhow!("--oidc-client-secret refused: {}: {error}", secret.display()))?;
            Ok(Some(crate::oidc::OidcConfig {
                issuer: issuer.clone(),
                client_id: client_id.clone(),
                client_secret,
                step_up,
            }))
        }
        _ => anyhow::bail!("--oidc-issuer, --oidc-client-id and --oidc-client-secret go together"),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DirectoryKind {
    Embedded,
    Http,
    Scim,
}

/// The directory the flags name, its files read; each misuse refused with the flag to fix.
fn directory(args: &ServeArgs) -> anyhow::Result<Option<crate::server::DirectoryConfig>> {
    use crate::server::DirectoryConfig;
    let url = args.directory_url.clone();
    let (secrets, token) = (&args.directory_secrets, &args.directory_token);
    if args.directory != DirectoryKind::Embedded && args.nats.is_none() {
        anyhow::bail!(
            "--directory {} needs --nats: on the embedded store the command-line tools (submit, rollback, review) \
             act on the data directory's own directory, so every change must go through one serving process",
            if args.directory == DirectoryKind::Http { "http" } else { "scim" }
        );
    }
    Ok(match (args.directory, url) {
        (DirectoryKind::Embedded, None) if secrets.is_none() && token.is_none() => None,
        (DirectoryKind::Embedded, _) => {
            anyhow::bail!("--directory-url, --directory-secrets and --directory-token are for --directory http or scim")
        }
        (DirectoryKind::Http, Some(url)) if token.is_none() => {
            let Some(secrets) = secrets else {
                anyhow::bail!("--directory http needs --directory-url URL and --directory-secrets FILE")
            };
            let secrets = crate::directory::http::Secret::load_file(secrets)
                .map_err(|error| anyhow::anyhow!("--directory-secrets refused: {error}"))?;
            Some(DirectoryConfig::Http { url, secrets })
        }
        (DirectoryKind::Http, _) => {
            anyhow::bail!("--directory http needs --directory-url URL and --directory-secrets FILE (no token)")
        }
        (DirectoryKind::Scim, Some(url)) if secrets.is_none() => {
            let Some(token) = token else {
                anyhow::bail!("--directory scim needs --directory-url URL and --directory-token FILE")
            };
            let token = crate::directory::scim::Token::load_file(token)
                .map_err(|error| anyhow::anyhow!("--directory-token refused: {error}"))?;
            Some(DirectoryConfig::Scim { url, token })
        }
        (DirectoryKind::Scim, _) => {
            anyhow::bail!("--directory scim needs --directory-url URL and --directory-token FILE (no secrets)")
        }
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

pub fn run(args: ServeArgs) -> u8 {
    // Every error names the flag it concerns and the variable that sets it: a container is configured by variables.
    let config = match config(args) {
        Ok(config) => config,
        Err(error) => {
            let told = crate::cli::name_variables(&format!("{error:#}"), &["serve"]);
            eprintln!("error: {told}");
            tracing::error!("{told}");
            return exit::UNAVAILABLE;
        }
    };
    let runtime = crate::cli::runtime();
    // The handlers are installed before anything starts: a SIGTERM that arrives while the server is still starting
    // (after it printed where it listens) stops it gracefully instead of killing it.
    let stop = {
        let _inside = runtime.enter();
        termination()
    };
    match runtime.block_on(crate::server::run(config, stop)) {
        Ok(()) => exit::OK,
        Err(error) => {
            let told = crate::cli::name_variables(&format!("{error:#}"), &["serve"]);
            eprintln!("error: {told}");
            tracing::error!("{told}");
            exit::UNAVAILABLE
        }
    }
}

/// The command line as the server's typed configuration: the policies loaded and the mail server's URL parsed, each
/// refused with the flag it came from.
fn config(args: ServeArgs) -> anyhow::Result<Config> {
    let policy = match &args.policies {
        Some(dir) => std::sync::Arc::new(
            crate::cli::policy::load_dir(dir).map_err(|error| anyhow::anyhow!("--policies refused: {error}"))?,
        ),
        None => crate::policy::Engine::shared(),
    };
    let smtp = match &args.smtp {
        Some(url) => Some(
            crate::notify::smtp::SmtpConfig::parse(url).map_err(|error| anyhow::anyhow!("--smtp refused: {error}"))?,
        ),
        None => None,
    };
    let directory = directory(&args)?;
    let oidc = oidc(&args)?;
    let console = console(&args)?;
    if args.directory_sync.is_zero() || args.directory_sync > Duration::from_secs(7 * 24 * 3600) {
        anyhow::bail!("--directory-sync must be longer than zero and at most 7 days");
    }
    let campaigns = campaigns(&args.campaign).map_err(|error| anyhow::anyhow!("--campaign refused: {error}"))?;
    let sms = match (&args.sms_url, &args.sms_secrets, args.sms_outbox) {
        (Some(url), Some(secrets), false) => {
            crate::notify::sms::provider_url(url).map_err(|error| anyhow::anyhow!("{error}"))?;
            let secrets = crate::directory::http::Secret::load_file(secrets)
                .map_err(|error| anyhow::anyhow!("--sms-secrets refused: {error}"))?;
            crate::server::SmsConfig::Provider { url: url.clone(), secrets }
        }
        (Some(_), None, _) => {
            anyhow::bail!("--sms-url needs --sms-secrets: the file of secrets its requests are signed with")
        }
        (None, Some(_), _) => anyhow::bail!("--sms-secrets goes with --sms-url"),
        (None, None, true) => crate::server::SmsConfig::Outbox,
        (None, None, false) => crate::server::SmsConfig::None,
        (Some(_), Some(_), true) => anyhow::bail!("--sms-url and --sms-outbox: choose one"),
    };
    let (webhooks, webhook_retry) = webhooks(&args)?;
    if !args.integrator.is_empty() && args.nats.is_none() {
        anyhow::bail!("--integrator needs --nats: integrators read the events from the NATS stream AIRLOCK_NOTIFY");
    }
    if let Some(id) = args.integrator.iter().find(|id| !crate::intake::subjects::actor_token_valid(id)) {
        anyhow::bail!("--integrator {id:?}: an integrator id is 1 to 64 of A-Z a-z 0-9 - _");
    }
    Ok(Config {
        webhooks,
        webhook_retry,
        integrators: args.integrator,
        campaigns,
        sms,
        directory_sync: args.directory_sync,
        directory,
        nats: args.nats.map(|url| NatsConfig { url, nkey: args.nats_nkey }),
        data_dir: args.data_dir,
        replicas: args.replicas,
        in_flight: args.in_flight,
        policy,
        tick: args.tick,
        http: args.http,
        public_url: args.public_url,
        smtp,
        metrics: args.metrics,
        ready_lag: args.ready_lag,
        oidc,
        console,
    })
}

/// The webhook endpoints and how hard each is tried, each misuse refused with the flag to fix.
fn webhooks(
    args: &ServeArgs,
) -> anyhow::Result<(Vec<crate::outward::webhook::Endpoint>, crate::outward::webhook::Retry)> {
    use crate::outward::webhook::{Endpoint, Retry};
    let retry =
        Retry { attempts: args.webhook_attempts, backoff_max: args.webhook_backoff_max, timeout: args.webhook_timeout };
    retry.check().map_err(|error| anyhow::anyhow!("{error}"))?;
    let files = &args.webhook_secrets;
    match (args.webhook.len(), files.len()) {
        (0, 0) => return Ok((Vec::new(), retry)),
        (0, _) => anyhow::bail!("--webhook-secrets goes with --webhook"),
        (_, 0) => anyhow::bail!("--webhook needs --webhook-secrets: the file of secrets its requests are signed with"),
        (endpoints, given) if given != 1 && given != endpoints => anyhow::bail!(
            "{endpoints} --webhook and {given} --webhook-secrets: give one secrets file for all, or one per endpoint"
        ),
        _ => {}
    }
    let mut endpoints: Vec<Endpoint> = Vec::new();
    for (index, url) in args.webhook.iter().enumerate() {
        let file = &files[index.min(files.len() - 1)];
        let secrets = crate::directory::http::Secret::load_file(file)
            .map_err(|error| anyhow::anyhow!("--webhook-secrets refused: {error}"))?;
        let endpoint = Endpoint::new(url.trim(), secrets).map_err(|error| anyhow::anyhow!("{error}"))?;
        if endpoints.iter().any(|known| known.url == endpoint.url) {
            anyhow::bail!("--webhook {} is given twice", endpoint.shown());
        }
        endpoints.push(endpoint);
    }
    Ok((endpoints, retry))
}

/// The campaign checks' thresholds: the shipped ones, with those `text` names replaced.
pub fn campaigns(text: &str) -> Result<crate::core::campaign::CampaignSettings, String> {
    use crate::core::campaign::{CampaignSettings, Check, Threshold};
    let mut settings = CampaignSettings::default();
    for item in text.split(',').map(str::trim).filter(|item| !item.is_empty()) {
        let names = Check::ALL.map(Check::name).join(", ");
        let (name, value) = item.split_once('=').ok_or_else(|| format!("{item:?} is not CHECK=ACCOUNTS/WINDOW"))?;
        let check = Check::parse(name.trim()).ok_or_else(|| format!("no check {name:?}: the checks are {names}"))?;
        let (accounts, window) =
            value.split_once('/').ok_or_else(|| format!("{item:?} is not CHECK=ACCOUNTS/WINDOW (such as 20/1h)"))?;
        let accounts_min = accounts.trim().parse::<u32>().map_err(|_| format!("{item:?}: {accounts:?} is no count"))?;
        let window = humantime::parse_duration(window.trim()).map_err(|error| format!("{item:?}: {error}"))?;
        settings.set(check, Threshold { accounts_min, window_ms: window.as_millis() as u64 })?;
    }
    Ok(settings)
}

/// A future that resolves on SIGTERM or SIGINT; the signal handlers are installed when it is made, not when it is
/// first polled.
fn termination() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).expect("SIGTERM can be handled");
    let mut interrupt = signal(SignalKind::interrupt()).expect("SIGINT can be handled");
    async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
    }
}
