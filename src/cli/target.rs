//! Where a command that changes cases or the kill switch acts, and as whom (issue 17, SPEC principle 12): the live
//! NATS deployment, as the actor the caller's own key was made for, or the embedded store of a data directory that
//! holds one. Every such command sends the same JSON command through the same intake path (`handle_json`) as the
//! other front doors, so it is checked once, the same way, in both modes.

use crate::core::actor::{Actor, Role};
use crate::core::text::check_identifier;
use crate::intake::{CommandType, handle_json};
use crate::server::embedded::{self, Embedded};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long a command sent over NATS waits for airlock's answer before reporting it unavailable.
const ANSWER_WAIT_MS: u64 = 30_000;

/// The store a command acts on: `--nats URL --nats-nkey FILE` for a NATS deployment, `--data-dir DIR` otherwise.
#[derive(Debug, Clone, clap::Args)]
pub struct TargetArgs {
    /// Act on the NATS deployment `airlock serve --nats` runs, for example nats://127.0.0.1:4222, as the actor of
    /// --nats-nkey.
    #[arg(long, env = "AIRLOCK_NATS_URL")]
    pub nats: Option<String>,
    /// Your own nkey seed file, as `airlock nats-config` wrote it (seeds/<role>.<id>.nk): you act as the actor it was
    /// made for.
    #[arg(long, env = "AIRLOCK_NATS_NKEY", value_name = "FILE")]
    pub nats_nkey: Option<PathBuf>,
    /// Without --nats: the data directory of the embedded store to act on.
    #[arg(long, env = "AIRLOCK_DATA_DIR", default_value = "airlock-data")]
    pub data_dir: PathBuf,
}

/// Asks the live service `query` on `actor`'s own query subject and returns its answer, which may be an error answer.
pub async fn ask_live(client: &async_nats::Client, actor: &Actor, query: Value) -> Result<Value, String> {
    ask_live_within(client, actor, query, Duration::from_millis(ANSWER_WAIT_MS)).await
}

/// `ask_live`, waiting up to `wait` (an audit rebuilds the whole log on the service).
pub async fn ask_live_within(
    client: &async_nats::Client,
    actor: &Actor,
    query: Value,
    wait: Duration,
) -> Result<Value, String> {
    let subject = crate::intake::subjects::query(&crate::intake::nats::IntakeConfig::default().prefix, actor);
    let refused = crate::nats::next_refusal();
    let request = async_nats::Request::new().payload(query.to_string().into()).timeout(Some(wait));
    let reply = tokio::select! {
        reply = client.send_request(subject, request) => reply,
        text = refused => return Err(crate::nats::refused_by_broker(&text)),
    };
    let reply = reply.map_err(|error| match error.kind() {
        async_nats::RequestErrorKind::TimedOut => format!(
            "no answer from airlock within {}s (is `airlock serve --nats` running? a long audit may still be running \
             there)",
            wait.as_secs()
        ),
        async_nats::RequestErrorKind::NoResponders => {
            "nothing answers airlock's queries (is `airlock serve --nats` running?)".to_string()
        }
        async_nats::RequestErrorKind::InvalidSubject
        | async_nats::RequestErrorKind::MaxPayloadExceeded
        | async_nats::RequestErrorKind::Other => format!("cannot ask airlock: {error}"),
    })?;
    serde_json::from_slice::<Value>(&reply.payload).map_err(|error| format!("unreadable answer: {error}"))
}

/// Who an operator's command acts as, and on which store: the flags `halt`, `resume`, `cancel` and `rollback` share.
#[derive(Debug, Clone, clap::Args)]
pub struct OperatorArgs {
    /// The operator acting (recorded as operator:ID) on the embedded store; over NATS the key says who you are, and
    /// this, if given, must agree with it.
    #[arg(long, env = "AIRLOCK_OPERATOR")]
    pub operator: Option<String>,
    #[command(flatten)]
    pub target: TargetArgs,
}

impl OperatorArgs {
    /// Opens the target as the operator; a refusal is printed and its exit code returned.
    pub async fn open(&self, client_name: &str) -> Result<Target, u8> {
        Target::open(&self.target, Role::Operator, self.operator.as_deref(), client_name).await.map_err(|refusal| {
            eprintln!("error: {}", refusal.message);
            refusal.code
        })
    }
}

/// The exit code of an answer that was not accepted, its reason printed unless the answer was printed as JSON:
/// unavailable (exit 3) when airlock could not take it now, refused (exit 1) otherwise.
pub fn not_accepted(answer: &Value, json: bool) -> u8 {
    let reason = answer["error"]["reason"].as_str().or(answer["message"].as_str()).unwrap_or_default();
    if answer["error"]["code"].as_str() == Some("unavailable") {
        if !json {
            eprintln!("unavailable: {reason}");
        }
        crate::cli::exit::UNAVAILABLE
    } else {
        if !json {
            eprintln!("refused: {reason}");
        }
        crate::cli::exit::FAILED
    }
}

/// Why a command could not reach its store, with the exit code it ends with.
#[derive(Debug)]
pub struct Refusal {
    pub message: String,
    pub code: u8,
}

impl Refusal {
    fn usage(message: String) -> Refusal {
        Refusal { message, code: crate::cli::exit::USAGE }
    }

    fn unavailable(message: String) -> Refusal {
        Refusal { message, code: crate::cli::exit::UNAVAILABLE }
    }
}

/// A store that was checked to be the live one, and the actor acting on it.
pub enum Target {
    Nats { client: async_nats::Client, actor: Actor },
    Embedded { embedded: Box<Embedded>, actor: Actor },
}

/// The actor an nkey seed file was made for, from the name `airlock nats-config` gives it: `<role>.<id>.nk`.
pub fn actor_of_key(path: &Path) -> Result<Actor, String> {
    let name = path.file_name().and_then(|name| name.to_str()).unwrap_or_default();
    let parsed = name.strip_suffix(".nk").and_then(|stem| stem.split_once('.')).and_then(|(role, id)| {
        let role = Role::ALL.into_iter().find(|known| known.name() == role && *known != Role::System)?;
        check_identifier("id", id).ok()?;
        Some(Actor::new(role, id))
    });
    parsed.ok_or_else(|| {
        format!(
            "cannot tell whose key {} is: airlock names each actor's seed file <role>.<id>.nk (for example \
             seeds/operator.ops-1.nk) and its own airlock.nk when `airlock nats-config` writes them; keep those names",
            path.display()
        )
    })
}

impl Target {
    /// Opens the store `args` names for an actor of `role`. Over NATS the actor is the key's and `named` (a flag such
    /// as `--operator`), when given, must be the same (without a key, on a development server without users, `named`
    /// is the actor); on the embedded store `named` is the actor. A data directory
    /// that is not an embedded store (none at all, or the projection of a NATS deployment) is refused: a command
    /// must never act on a store nothing serves.
    pub async fn open(
        args: &TargetArgs,
        role: Role,
        named: Option<&str>,
        client_name: &str,
    ) -> Result<Target, Refusal> {
        if let Some(named) = named {
            check_identifier(role.name(), named).map_err(|rejection| Refusal::usage(rejection.to_string()))?;
        }
        match &args.nats {
            Some(url) => {
                let Some(key) = args.nats_nkey.as_deref() else {
                    // A broker without users (a development server) cannot tell actors apart: the name is the flag's.
                    let named = named.ok_or_else(|| {
                        Refusal::usage(format!(
                            "--nats needs --nats-nkey: your own {role} key, as `airlock nats-config` wrote it (or, on \
                             a development server without users, --{role} NAME)"
                        ))
                    })?;
                    let client = crate::nats::connect_seeded(url, client_name, None)
                        .await
                        .map_err(|error| Refusal::unavailable(error.to_string()))?;
                    return Ok(Target::Nats { client, actor: Actor::new(role, named) });
                };
                let actor = actor_of_key(key).map_err(Refusal::usage)?;
                if actor.role != role {
                    return Err(Refusal::usage(format!(
                        "{} is the key of {} {}; this command needs a {role}'s key",
                        key.display(),
                        actor.role,
                        actor.id
                    )));
                }
                if let Some(named) = named.filter(|named| *named != actor.id.as_str()) {
                    return Err(Refusal::usage(format!(
                        "--{role} {named} does not match the key {} ({role} {}): a key acts only as the actor it \
                         was made for; leave --{role} out or use {named}'s key",
                        key.display(),
                        actor.id
                    )));
                }
                let client = crate::nats::connect_seeded(url, client_name, Some(key))
                    .await
                    .map_err(|error| Refusal::unavailable(error.to_string()))?;
                Ok(Target::Nats { client, actor })
            }
            None => {
                live_embedded_store(&args.data_dir)?;
                let embedded = embedded::open_data_dir(&args.data_dir)
                    .await
                    .map_err(|error| Refusal::unavailable(format!("{error:#}")))?;
                let actor = Actor::new(role, named.unwrap_or(role.name()));
                Ok(Target::Embedded { embedded: Box::new(embedded), actor })
            }
        }
    }

    pub fn actor(&self) -> &Actor {
        match self {
            Target::Nats { actor, .. } | Target::Embedded { actor, .. } => actor,
        }
    }

    /// Whether the live service's kill switch is on, read back from its log: over NATS through the actor's own query
    /// subject, on the embedded store from its log file.
    pub async fn halted(&self) -> Result<bool, String> {
        let answer = match self {
            Target::Nats { .. } => self.ask(serde_json::json!({ "query": "kill_switch" })).await?,
            Target::Embedded { embedded, .. } => {
                let (state, _, _) = embedded.service.control_state().await.map_err(|error| error.to_string())?;
                return Ok(state.halted);
            }
        };
        answer["halted"].as_bool().ok_or_else(|| {
            format!("cannot read the kill switch: {}", answer["error"]["reason"].as_str().unwrap_or("no answer"))
        })
    }

    /// The executed cases matching `indicator` (`destination-domain=...`, `source-network=...`) since `since`, with
    /// what each changed: over NATS from the live service's projection (operators only), on the embedded store from
    /// its own.
    pub async fn executed_matching(
        &self,
        indicator: &str,
        since: crate::core::ids::UnixMs,
    ) -> Result<Vec<(crate::core::ids::CaseId, String)>, String> {
        match self {
            Target::Nats { .. } => {
                let answer = self
                    .ask(serde_json::json!({ "query": "executed_matching", "match": indicator, "since_ms": since.0 }))
                    .await?;
                let cases = answer["cases"].as_array().ok_or_else(|| {
                    format!("cannot list the cases: {}", answer["error"]["reason"].as_str().unwrap_or("no answer"))
                })?;
                Ok(cases
                    .iter()
                    .map(|case| {
                        let id = crate::core::ids::CaseId::new(case["case_id"].as_str().unwrap_or_default());
                        (id, case["changes"].as_str().unwrap_or_default().to_string())
                    })
                    .collect())
            }
            Target::Embedded { embedded, .. } => {
                let indicator = crate::projection::query::Indicator::parse(indicator)?;
                embedded.service.projection.executed_matching(&indicator, since).map_err(|error| error.to_string())
            }
        }
    }

    /// Asks one query (`intake::query::answer`) as the actor: over NATS on its own query subject, on the embedded
    /// store directly. The answer may be an error answer.
    pub async fn query(&self, query: Value) -> Result<Value, String> {
        match self {
            Target::Nats { .. } => self.ask(query).await,
            Target::Embedded { embedded, actor } => {
                Ok(crate::intake::query::answer(&embedded.service, actor, query.to_string().as_bytes()).await)
            }
        }
    }

    /// Asks the live service one query on the actor's own query subject (NATS mode only).
    async fn ask(&self, query: Value) -> Result<Value, String> {
        let Target::Nats { client, actor } = self else { unreachable!("only NATS targets are asked over NATS") };
        ask_live(client, actor, query).await
    }

    /// Sends one command and, under `--json`, prints airlock's answer: the answer when it was accepted, else the exit
    /// code (its reason printed, unless the answer was printed as JSON).
    pub async fn command(&self, command: CommandType, body: &Value, json: bool) -> Result<Value, u8> {
        let answer = self.send(command, body).await.map_err(|error| {
            eprintln!("error: {error}");
            crate::cli::exit::UNAVAILABLE
        })?;
        if json {
            println!("{}", serde_json::to_string_pretty(&answer).expect("a value serializes"));
        }
        if answer["accepted"].as_bool() != Some(true) {
            return Err(not_accepted(&answer, json));
        }
        Ok(answer)
    }

    /// Sends one JSON command and returns airlock's answer (the intake `Reply` as JSON): over NATS on the actor's own
    /// intake subject, on the embedded store through the same `handle_json`.
    pub async fn send(&self, command: CommandType, body: &Value) -> Result<Value, String> {
        let bytes = body.to_string().into_bytes();
        match self {
            Target::Nats { client, actor } => {
                let refused = crate::nats::next_refusal();
                let wait = Duration::from_millis(ANSWER_WAIT_MS);
                tokio::select! {
                    answer = crate::intake::nats::send_command(client, actor, command, bytes, wait) => answer,
                    text = refused => Err(crate::nats::refused_by_broker(&text)),
                }
            }
            Target::Embedded { embedded, actor } => {
                let reply = handle_json(&embedded.service, actor, command, &bytes).await;
                Ok(serde_json::to_value(reply).expect("a reply serializes"))
            }
        }
    }
}

/// Refuses a data directory that holds no embedded store: nothing there (a typo, or the wrong machine), or the
/// projection of a NATS deployment, whose log is on the NATS servers. Writing there would create a second, local
/// store that no running airlock reads.
pub fn live_embedded_store(data_dir: &Path) -> Result<(), Refusal> {
    if data_dir.join("log.db").is_file() {
        return Ok(());
    }
    let message = if data_dir.join("projection.db").is_file() {
        format!(
            "{} belongs to a NATS deployment (it holds a projection, and the events are on the NATS servers): nothing \
             was changed; act on the live service with --nats URL --nats-nkey YOUR-KEY",
            data_dir.display()
        )
    } else {
        format!(
            "{} holds no airlock store (no log.db): nothing was changed; name the data directory of the embedded \
             store with --data-dir, or act on a NATS deployment with --nats URL --nats-nkey YOUR-KEY",
            data_dir.display()
        )
    };
    Err(Refusal { message, code: crate::cli::exit::FAILED })
}
