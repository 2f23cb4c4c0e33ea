//! Configuration from a TOML file, with environment overrides: `--config FILE` (or `AIRLOCK_CONFIG`) names the file;
//! there is no implicit one, so nobody can point airlock elsewhere by leaving a file in its working directory. Each
//! key stands for one `AIRLOCK_*` variable, and the order is: a command-line flag, then the environment, then the file,
//! then the built-in default. The file fills in defaults of the command line itself (`with_file_defaults`), so
//! every command reads it the same way and `--help` shows the values it set. `airlock config check` validates a file
//! and shows each setting's effective value and where it came from.

use crate::cli::exit;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The environment variable naming the configuration file.
pub const CONFIG_ENV: &str = "AIRLOCK_CONFIG";

/// Every key of the file: the variable it stands for, and what it sets.
pub const KEYS: [(&str, &str, &str); 40] = [
    ("data_dir", "AIRLOCK_DATA_DIR", "the data directory (projection, embedded store, key file)"),
    ("nats_url", "AIRLOCK_NATS_URL", "NATS server(s), comma-separated: nats://host:4222"),
    ("nats_nkey", "AIRLOCK_NATS_NKEY", "the nkey seed file to connect to NATS with (`airlock nats-config`)"),
    ("policies", "AIRLOCK_POLICIES", "a folder of policies to decide with instead of the shipped ones"),
    ("http", "AIRLOCK_HTTP", "the owners' page address, for example 127.0.0.1:8080"),
    ("public_url", "AIRLOCK_PUBLIC_URL", "the address owners reach the page at, used in links"),
    ("smtp_url", "AIRLOCK_SMTP_URL", "the mail server for email notices"),
    ("reviewer", "AIRLOCK_REVIEWER", "the reviewer id `airlock review approve/deny` records"),
    ("operator", "AIRLOCK_OPERATOR", "the operator id halt/resume/rollback record"),
    ("replicas", "AIRLOCK_REPLICAS", "replicas of the streams airlock creates (1 to 5)"),
    ("tick", "AIRLOCK_TICK", "how often the timers run, for example 1s"),
    ("in_flight", "AIRLOCK_IN_FLIGHT", "commands decided at once"),
    ("metrics", "AIRLOCK_METRICS", "the private address of /healthz, /readyz and /metrics, for example 127.0.0.1:9090"),
    ("ready_lag", "AIRLOCK_READY_LAG", "how many log entries the projector may trail before /readyz says not ready"),
    ("log_format", "AIRLOCK_LOG_FORMAT", "text or json"),
    ("mcp_requester", "AIRLOCK_MCP_REQUESTER", "the intake actor `airlock mcp` requests as"),
    ("directory", "AIRLOCK_DIRECTORY", "where accounts live: embedded, http (docs/directory-adapter.md) or scim"),
    ("directory_url", "AIRLOCK_DIRECTORY_URL", "the HTTP directory adapter's address, or the SCIM service's base"),
    ("directory_secrets", "AIRLOCK_DIRECTORY_SECRETS", "the file of secrets the adapter's requests are signed with"),
    ("directory_token", "AIRLOCK_DIRECTORY_TOKEN", "the file of the bearer token the SCIM service is called with"),
    ("directory_sync", "AIRLOCK_DIRECTORY_SYNC", "how often a directory without per-address ages is read whole"),
    ("oidc_issuer", "AIRLOCK_OIDC_ISSUER", "the OpenID Connect provider owners prove a second factor at by signing in"),
    ("oidc_client_id", "AIRLOCK_OIDC_CLIENT_ID", "airlock's client id at that provider"),
    ("oidc_client_secret", "AIRLOCK_OIDC_CLIENT_SECRET", "the file of airlock's client secret at that provider"),
    ("oidc_step_up", "AIRLOCK_OIDC_STEP_UP", "what a sign-in must show to count: amr:VALUE or acr:VALUE, any of them"),
    ("console_reviewer_group", "AIRLOCK_CONSOLE_REVIEWER_GROUP", "the group whose members review in the console"),
    ("console_operator_group", "AIRLOCK_CONSOLE_OPERATOR_GROUP", "the group whose members operate in the console"),
    ("console_groups_claim", "AIRLOCK_CONSOLE_GROUPS_CLAIM", "the ID token claim listing a person's groups"),
    ("console_person_claim", "AIRLOCK_CONSOLE_PERSON_CLAIM", "the ID token claim naming the person"),
    ("console_scopes", "AIRLOCK_CONSOLE_SCOPES", "scopes the console asks for besides openid"),
    ("campaign", "AIRLOCK_CAMPAIGN", "campaign checks' thresholds: CHECK=ACCOUNTS/WINDOW, comma-separated"),
    ("sms_url", "AIRLOCK_SMS_URL", "the SMS provider endpoint text messages to phones are posted to"),
    ("sms_secrets", "AIRLOCK_SMS_SECRETS", "the file of secrets the SMS provider's requests are signed with"),
    ("sms_outbox", "AIRLOCK_SMS_OUTBOX", "true: keep text messages in the embedded outbox (trying airlock out)"),
    ("webhook", "AIRLOCK_WEBHOOK", "endpoints every case and alert event is posted to, comma-separated"),
    (
        "webhook_secrets",
        "AIRLOCK_WEBHOOK_SECRETS",
        "the secrets file(s) webhooks are signed with, one or one per endpoint",
    ),
    ("webhook_attempts", "AIRLOCK_WEBHOOK_ATTEMPTS", "attempts per event and endpoint before a dead letter (1 to 100)"),
    ("webhook_backoff_max", "AIRLOCK_WEBHOOK_BACKOFF_MAX", "the longest pause between two webhook attempts"),
    ("webhook_timeout", "AIRLOCK_WEBHOOK_TIMEOUT", "how long one webhook attempt may take"),
    (
        "integrator",
        "AIRLOCK_INTEGRATOR",
        "integrators whose consumers of AIRLOCK_NOTIFY airlock creates, comma-separated",
    ),
];

/// The file as written. Unknown keys are an error: a misspelt key must not silently fall back to a default.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub data_dir: Option<PathBuf>,
    pub nats_url: Option<String>,
    pub nats_nkey: Option<PathBuf>,
    pub policies: Option<PathBuf>,
    pub http: Option<String>,
    pub public_url: Option<String>,
    pub smtp_url: Option<String>,
    pub reviewer: Option<String>,
    pub operator: Option<String>,
    pub replicas: Option<u64>,
    pub tick: Option<String>,
    pub in_flight: Option<u64>,
    pub metrics: Option<String>,
    pub ready_lag: Option<u64>,
    pub log_format: Option<String>,
    pub mcp_requester: Option<String>,
    pub directory: Option<String>,
    pub directory_url: Option<String>,
    pub directory_secrets: Option<PathBuf>,
    pub directory_token: Option<PathBuf>,
    pub directory_sync: Option<String>,
    pub oidc_issuer: Option<String>,
    pub oidc_client_id: Option<String>,
    pub oidc_client_secret: Option<PathBuf>,
    pub oidc_step_up: Option<String>,
    pub console_reviewer_group: Option<String>,
    pub console_operator_group: Option<String>,
    pub console_groups_claim: Option<String>,
    pub console_person_claim: Option<String>,
    pub console_scopes: Option<String>,
    pub campaign: Option<String>,
    pub sms_url: Option<String>,
    pub sms_secrets: Option<PathBuf>,
    pub sms_outbox: Option<bool>,
    pub webhook: Option<String>,
    pub webhook_secrets: Option<String>,
    pub webhook_attempts: Option<u64>,
    pub webhook_backoff_max: Option<String>,
    pub webhook_timeout: Option<String>,
    pub integrator: Option<String>,
}

impl ConfigFile {
    /// The values the file sets, by the variable each stands for.
    pub fn values(&self) -> BTreeMap<&'static str, String> {
        let path = |value: &Option<PathBuf>| value.as_ref().map(|path| path.display().to_string());
        let number = |value: &Option<u64>| value.map(|number| number.to_string());
        let values = [
            path(&self.data_dir),
            self.nats_url.clone(),
            path(&self.nats_nkey),
            path(&self.policies),
            self.http.clone(),
            self.public_url.clone(),
            self.smtp_url.clone(),
            self.reviewer.clone(),
            self.operator.clone(),
            number(&self.replicas),
            self.tick.clone(),
            number(&self.in_flight),
            self.metrics.clone(),
            number(&self.ready_lag),
            self.log_format.clone(),
            self.mcp_requester.clone(),
            self.directory.clone(),
            self.directory_url.clone(),
            path(&self.directory_secrets),
            path(&self.directory_token),
            self.directory_sync.clone(),
            self.oidc_issuer.clone(),
            self.oidc_client_id.clone(),
            path(&self.oidc_client_secret),
            self.oidc_step_up.clone(),
            self.console_reviewer_group.clone(),
            self.console_operator_group.clone(),
            self.console_groups_claim.clone(),
            self.console_person_claim.clone(),
            self.console_scopes.clone(),
            self.campaign.clone(),
            self.sms_url.clone(),
            path(&self.sms_secrets),
            self.sms_outbox.map(|outbox| outbox.to_string()),
            self.webhook.clone(),
            self.webhook_secrets.clone(),
            number(&self.webhook_attempts),
            self.webhook_backoff_max.clone(),
            self.webhook_timeout.clone(),
            self.integrator.clone(),
        ];
        KEYS.iter().zip(values).filter_map(|((_, env, _), value)| value.map(|value| (*env, value))).collect()
    }
}

/// Reads and parses a configuration file. Errors name the file, and the line and key where TOML says.
pub fn load(path: &Path) -> Result<ConfigFile, String> {
    let text = std::fs::read_to_string(path).map_err(|error| format!("cannot read {}: {error}", path.display()))?;
    toml::from_str(&text).map_err(|error| format!("{}: {error}", path.display()))
}

/// The file named by `--config FILE` / `--config=FILE` on the command line, else by `AIRLOCK_CONFIG`.
pub fn named(args: &[OsString]) -> Option<PathBuf> {
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        if arg == "--" {
            break;
        }
        if arg == "--config" {
            return args.next().map(PathBuf::from);
        }
        if let Some(value) = arg.to_str().and_then(|text| text.strip_prefix("--config=")) {
            return Some(PathBuf::from(value));
        }
    }
    std::env::var_os(CONFIG_ENV).filter(|value| !value.is_empty()).map(PathBuf::from)
}

/// The command line with the file's values as the defaults of the arguments they stand for, in every subcommand.
pub fn with_file_defaults(mut command: clap::Command, values: &BTreeMap<&'static str, String>) -> clap::Command {
    let wanted: Vec<(clap::Id, String)> = command
        .get_arguments()
        .filter_map(|arg| {
            let env = arg.get_env()?.to_str()?;
            values.get(env).map(|value| (arg.get_id().clone(), value.clone()))
        })
        .collect();
    for (id, value) in wanted {
        // A secret's value (the SMTP URL's password) must not show in `--help` as its default either.
        command = command.mut_arg(id, |arg| {
            let secret = arg.is_hide_env_values_set();
            arg.default_value(value).hide_default_value(secret)
        });
    }
    let names: Vec<String> = command.get_subcommands().map(|sub| sub.get_name().to_string()).collect();
    for name in names {
        command = command.mut_subcommand(name, |sub| with_file_defaults(sub, values));
    }
    command
}

#[derive(Debug, clap::Args)]
pub struct ConfigArgs {
    #[command(subcommand)]
    pub command: ConfigCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum ConfigCommand {
    /// Validate the configuration file and show each setting's effective value and where it comes from.
    #[command(after_help = "Examples:\n  airlock config check --config /etc/airlock/airlock.toml\n  \
AIRLOCK_CONFIG=./airlock.toml airlock config check --json\n\n\
Keys (each stands for its AIRLOCK_* variable, which overrides it; a command-line flag overrides both):\n  \
data_dir, nats_url, policies, http, public_url, smtp_url, reviewer, operator, replicas, tick, in_flight")]
    Check {
        /// Print one JSON object (fields: file, valid, problems[key, problem], settings[key, env, value, source]).
        #[arg(long)]
        json: bool,
    },
}

/// One setting as `config check` reports it.
#[derive(Debug, Serialize)]
struct Setting {
    key: &'static str,
    env: &'static str,
    /// The effective value, with any password in a URL masked; `null` when unset.
    value: Option<String>,
    /// `environment`, `file`, or `default` (airlock's built-in default or none).
    source: &'static str,
}

#[derive(Debug, Serialize)]
struct Problem {
    key: String,
    problem: String,
}

#[derive(Debug, Serialize)]
struct CheckReport {
    file: Option<String>,
    valid: bool,
    problems: Vec<Problem>,
    settings: Vec<Setting>,
    /// Where `serve` sends each destination kind's notices.
    channels: Vec<Channel>,
}

#[derive(Debug, Serialize)]
struct Channel {
    kind: &'static str,
    channel: String,
}

/// A setting as shown: every URL's password masked and, where a query can only be a mistake that holds a token (the
/// endpoints airlock signs its requests to, the directory, the identity provider), the query too; the endpoints
/// airlock posts to (webhooks, the SMS provider) show their origin only, since a receiver's path often holds a token.
/// The SMTP URL keeps its query (its options, such as from=).
fn masked_setting(env: &str, value: &str) -> String {
    let query_is_secret =
        ["AIRLOCK_WEBHOOK", "AIRLOCK_SMS_URL", "AIRLOCK_DIRECTORY_URL", "AIRLOCK_OIDC_ISSUER"].contains(&env);
    let origin_only = ["AIRLOCK_WEBHOOK", "AIRLOCK_SMS_URL"].contains(&env);
    value
        .split(',')
        .map(|item| {
            let shown = masked(item);
            match url::Url::parse(item.trim()) {
                Ok(url) if origin_only && url.has_host() => {
                    let rest = if url.path() == "/" && url.query().is_none() { "" } else { "/***" };
                    format!("{}{rest}", url.origin().ascii_serialization())
                }
                _ => match shown.split_once(['?', '#']) {
                    Some((before, _)) if query_is_secret => format!("{before}?***"),
                    _ => shown,
                },
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// A URL with the password of its user part replaced by `***`.
fn masked(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let Some((user_part, host)) = authority.rsplit_once('@') else { return url.to_string() };
    match user_part.split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:***@{host}{tail}"),
        None => url.to_string(),
    }
}

/// Every problem with one effective value.
fn check_value(env: &'static str, value: &str) -> Option<String> {
    match env {
        "AIRLOCK_NATS_URL" => value.split(',').map(str::trim).find_map(|url| {
            let (scheme, host) = url.split_once("://").unwrap_or(("", url));
            let scheme_ok = ["nats", "tls", "ws", "wss"].contains(&scheme);
            (!scheme_ok || host.is_empty())
                .then(|| format!("{url:?} is not a NATS URL (nats://host:port, tls://host:port)"))
        }),
        "AIRLOCK_SMTP_URL" => crate::notify::smtp::SmtpConfig::parse(value).err().map(|error| error.to_string()),
        "AIRLOCK_HTTP" | "AIRLOCK_METRICS" => value
            .parse::<std::net::SocketAddr>()
            .err()
            .map(|_| format!("{value:?} is not an address and port (127.0.0.1:8080)")),
        "AIRLOCK_PUBLIC_URL" => (!(value.starts_with("https://") || value.starts_with("http://")))
            .then(|| format!("{value:?} is not an http(s) URL")),
        "AIRLOCK_POLICIES" => crate::cli::policy::load_dir(Path::new(value)).err(),
        "AIRLOCK_NATS_NKEY" => crate::nats::Identity::load(Path::new(value)).err().map(|error| error.to_string()),
        "AIRLOCK_REVIEWER" | "AIRLOCK_OPERATOR" | "AIRLOCK_MCP_REQUESTER" => {
            crate::core::text::check_identifier(env, value).err().map(|rejection| rejection.to_string())
        }
        "AIRLOCK_REPLICAS" => match value.parse::<u64>() {
            Ok(1..=5) => None,
            Ok(_) | Err(_) => Some(format!("{value:?} is not a number of replicas from 1 to 5")),
        },
        "AIRLOCK_IN_FLIGHT" => match value.parse::<u64>() {
            Ok(1..=4096) => None,
            Ok(_) | Err(_) => Some(format!("{value:?} is not a number from 1 to 4096")),
        },
        "AIRLOCK_READY_LAG" => value.parse::<u64>().err().map(|_| format!("{value:?} is not a number of log entries")),
        "AIRLOCK_DIRECTORY" => (!["embedded", "http", "scim"].contains(&value))
            .then(|| format!("{value:?} is not a directory: embedded, http or scim")),
        "AIRLOCK_DIRECTORY_SECRETS" | "AIRLOCK_SMS_SECRETS" => {
            crate::directory::http::Secret::load_file(Path::new(value)).err()
        }
        "AIRLOCK_SMS_URL" => crate::notify::sms::provider_url(value).err(),
        "AIRLOCK_WEBHOOK" => {
            value.split(',').find_map(|url| crate::outward::webhook::Endpoint::new(url.trim(), Vec::new()).err())
        }
        "AIRLOCK_WEBHOOK_SECRETS" => {
            value.split(',').find_map(|file| crate::directory::http::Secret::load_file(Path::new(file.trim())).err())
        }
        "AIRLOCK_INTEGRATOR" => value.split(',').map(str::trim).find_map(|id| {
            (!crate::intake::subjects::actor_token_valid(id))
                .then(|| format!("{id:?} is not an integrator id (1 to 64 of A-Z a-z 0-9 - _)"))
        }),
        "AIRLOCK_WEBHOOK_ATTEMPTS" => match value.parse::<usize>() {
            Ok(attempts) if (1..=crate::outward::webhook::ATTEMPTS_MAX).contains(&attempts) => None,
            Ok(_) | Err(_) => Some(format!("{value:?} is not a number of attempts from 1 to 100")),
        },
        "AIRLOCK_SMS_OUTBOX" => {
            (!["true", "false"].contains(&value)).then(|| format!("{value:?} is not true or false"))
        }
        "AIRLOCK_CAMPAIGN" => crate::cli::serve::campaigns(value).err(),
        "AIRLOCK_DIRECTORY_TOKEN" => crate::directory::scim::Token::load_file(Path::new(value)).err(),
        "AIRLOCK_DIRECTORY_URL" => crate::directory::http::adapter_url(value).err(),
        "AIRLOCK_LOG_FORMAT" => {
            (!["text", "json"].contains(&value)).then(|| format!("{value:?} is not a log format: text or json"))
        }
        "AIRLOCK_WEBHOOK_TIMEOUT" | "AIRLOCK_WEBHOOK_BACKOFF_MAX" => {
            let longest = if env == "AIRLOCK_WEBHOOK_TIMEOUT" {
                crate::outward::webhook::TIMEOUT_MAX
            } else {
                crate::outward::webhook::BACKOFF_MAX_MAX
            };
            match humantime::parse_duration(value) {
                Ok(duration) if !duration.is_zero() && duration <= longest => None,
                Ok(_) => Some(format!(
                    "{value:?} is not longer than zero and at most {}",
                    humantime::format_duration(longest)
                )),
                Err(_) => Some(format!("{value:?} is not a duration such as 1s or 500ms")),
            }
        }
        "AIRLOCK_TICK" | "AIRLOCK_DIRECTORY_SYNC" => match humantime::parse_duration(value) {
            Ok(tick) if !tick.is_zero() => None,
            Ok(_) | Err(_) => Some(format!("{value:?} is not a duration such as 1s or 500ms")),
        },
        "AIRLOCK_DATA_DIR" => {
            let path = Path::new(value);
            let existing = path.ancestors().find(|ancestor| ancestor.exists() || ancestor.as_os_str().is_empty());
            match existing {
                Some(ancestor) if ancestor.as_os_str().is_empty() || ancestor.is_dir() => None,
                Some(ancestor) => Some(format!("{} is not a directory", ancestor.display())),
                None => None,
            }
        }
        _ => None,
    }
}

/// A password kept in a file others can read is a leak waiting to happen.
#[cfg(unix)]
fn readable_by_others(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|metadata| metadata.permissions().mode() & 0o044 != 0)
}

#[cfg(not(unix))]
fn readable_by_others(_path: &Path) -> bool {
    false
}

pub fn run(args: ConfigArgs, file: Option<PathBuf>) -> u8 {
    let ConfigCommand::Check { json } = args.command;
    let mut problems = Vec::new();
    let loaded = match &file {
        None => ConfigFile::default(),
        Some(path) => load(path).unwrap_or_else(|error| {
            problems.push(Problem { key: "file".to_string(), problem: error });
            ConfigFile::default()
        }),
    };
    let from_file = loaded.values();
    let mut settings = Vec::new();
    for (key, env, _) in KEYS {
        let from_environment = std::env::var(env).ok().filter(|value| !value.is_empty());
        let (value, source) = match (from_environment, from_file.get(env)) {
            (Some(value), _) => (Some(value), "environment"),
            (None, Some(value)) => (Some(value.clone()), "file"),
            (None, None) => (None, "default"),
        };
        if let Some(value) = &value
            && let Some(problem) = check_value(env, value)
        {
            problems.push(Problem { key: key.to_string(), problem: format!("{problem} (from the {source})") });
        }
        if key == "smtp_url"
            && source == "file"
            && value.as_deref().is_some_and(|url| masked(url) != url)
            && file.as_deref().is_some_and(readable_by_others)
        {
            problems.push(Problem {
                key: key.to_string(),
                problem: "holds a password and the file is readable by others: chmod 600 it, or set \
                          AIRLOCK_SMTP_URL in the environment instead"
                    .to_string(),
            });
        }
        settings.push(Setting { key, env, value: value.map(|value| masked_setting(env, &value)), source });
    }
    let effective =
        |env: &str| settings.iter().find(|setting| setting.env == env).and_then(|setting| setting.value.clone());
    // What `serve` refuses together, said here first.
    let sms = (effective("AIRLOCK_SMS_URL"), effective("AIRLOCK_SMS_SECRETS"), effective("AIRLOCK_SMS_OUTBOX"));
    let sms_problem = match (&sms.0, &sms.1, sms.2.as_deref()) {
        (Some(_), None, _) => Some("sms_url needs sms_secrets: the file of secrets its requests are signed with"),
        (None, Some(_), _) => Some("sms_secrets goes with sms_url"),
        (Some(_), Some(_), Some("true")) => Some("sms_url and sms_outbox: choose one"),
        _ => None,
    };
    if let Some(problem) = sms_problem {
        problems.push(Problem { key: "sms_url".to_string(), problem: problem.to_string() });
    }
    let count = |env: &str| effective(env).map_or(0, |value| value.split(',').count());
    let webhook_problem = match (count("AIRLOCK_WEBHOOK"), count("AIRLOCK_WEBHOOK_SECRETS")) {
        (0, 0) => None,
        (_, 0) => Some("webhook needs webhook_secrets: the file of secrets its requests are signed with".to_string()),
        (0, _) => Some("webhook_secrets goes with webhook".to_string()),
        (endpoints, files) if files != 1 && files != endpoints => Some(format!(
            "{endpoints} webhook endpoints and {files} webhook_secrets files: one for all, or one per endpoint"
        )),
        _ => None,
    };
    let webhook_problem = webhook_problem.or_else(|| {
        let urls: Vec<String> = effective("AIRLOCK_WEBHOOK")?
            .split(',')
            .filter_map(|url| url::Url::parse(url.trim()).ok().map(|url| url.to_string()))
            .collect();
        let twice = urls.iter().enumerate().find(|(index, url)| urls[..*index].contains(url))?;
        let shown = url::Url::parse(twice.1).map(|url| url.origin().ascii_serialization()).unwrap_or_default();
        Some(format!("the webhook endpoint {shown} is given twice"))
    });
    if let Some(problem) = webhook_problem {
        problems.push(Problem { key: "webhook".to_string(), problem });
    }
    let channels = vec![
        Channel {
            kind: "email",
            channel: match effective("AIRLOCK_SMTP_URL") {
                Some(_) => "the mail server of smtp_url".to_string(),
                None => "the embedded outbox (no smtp_url)".to_string(),
            },
        },
        Channel {
            kind: "phone",
            channel: match (effective("AIRLOCK_SMS_URL"), effective("AIRLOCK_SMS_OUTBOX").as_deref()) {
                (Some(url), _) => format!(
                    "the SMS provider at {}",
                    url::Url::parse(&url).ok().and_then(|url| url.host_str().map(str::to_string)).unwrap_or_default()
                ),
                (None, Some("true")) => "the embedded outbox (sms_outbox)".to_string(),
                (None, _) => "nowhere in serve: no sms_url (and no sms_outbox); text messages fail".to_string(),
            },
        },
    ];
    let report = CheckReport {
        file: file.map(|path| path.display().to_string()),
        valid: problems.is_empty(),
        problems,
        settings,
        channels,
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&report).expect("plain data serializes"));
    } else {
        match &report.file {
            Some(file) => println!("configuration file: {file}"),
            None => println!("no configuration file (--config FILE or {CONFIG_ENV}): the environment and defaults"),
        }
        let mut table = vec![["KEY", "VALUE", "FROM"].map(String::from)];
        for setting in &report.settings {
            let value = setting.value.clone().unwrap_or_else(|| "-".to_string());
            table.push([setting.key.to_string(), value, setting.source.to_string()]);
        }
        crate::cli::store::print_table(&table);
        for channel in &report.channels {
            println!("{} notices go to {}", channel.kind, channel.channel);
        }
        for problem in &report.problems {
            println!("problem: {}: {}", problem.key, problem.problem);
        }
        println!("{}", if report.valid { "configuration valid" } else { "configuration INVALID" });
    }
    if report.valid { exit::OK } else { exit::FAILED }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves a URL's password is masked and nothing else is changed.
    #[test]
    fn masks_only_the_password() {
        assert_eq!(
            masked("smtps://bot:s3cret@mail.example.com:465?from=a@b.c"),
            "smtps://bot:***@mail.example.com:465?from=a@b.c"
        );
        assert_eq!(masked("smtps://bot@mail.example.com?from=a@b.c"), "smtps://bot@mail.example.com?from=a@b.c");
        assert_eq!(masked("nats://127.0.0.1:4222"), "nats://127.0.0.1:4222");
    }

    // Proves `--config` is found in either spelling, and only before `--`.
    #[test]
    fn finds_the_named_file() {
        let args = |list: &[&str]| list.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(named(&args(&["airlock", "--config", "a.toml", "demo"])), Some(PathBuf::from("a.toml")));
        assert_eq!(named(&args(&["airlock", "serve", "--config=b.toml"])), Some(PathBuf::from("b.toml")));
    }
}
