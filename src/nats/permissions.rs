//! Least privilege at the broker (`airlock nats-config`): a nats-server configuration with one nkey user per actor,
//! in which each role may publish only the commands its role may send, only under its own actor id, and read only its
//! own answers; and in which nobody but airlock may write the event log, the answers or the dead letters, or call the
//! JetStream API at all. airlock itself may not delete or purge a stream, nor change the event log's or the ledgers'
//! configuration: the log is append-only at the broker too.
//!
//! Identity comes from the subject (`<prefix>.intake.<role>.<actor>.<command>`, see `intake::subjects`), so these
//! permissions are what make the subject's actor true: an actor's key can publish under its own id and nowhere else.
//! Every user's replies come to a private inbox, `_INBOX.<its public key>`, so no actor can read another's replies.
//!
//! This module only writes text; `cli::nats_config` makes the keys and the files.

use crate::core::actor::Role;
use crate::intake::CommandType;
use crate::intake::nats::IntakeConfig;
use crate::intake::subjects;
use crate::log::jetstream::{JetStreamConfig, LEDGER_BUCKET};
use crate::outward::nats::{NOTIFY_PREFIX, NOTIFY_STREAM, integrator_consumer};

/// One NATS user: an actor of a role, or (`role: None`) airlock itself or an integrator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub role: Option<Role>,
    /// The actor id (the subject token), or `airlock`.
    pub id: String,
    /// The nkey public key (`U...`).
    pub public_key: String,
}

/// Where the server listens and keeps its store.
#[derive(Clone, Debug)]
pub struct ServerSettings {
    pub listen: String,
    pub store_dir: String,
    /// `server_name`, needed by JetStream in a cluster; optional alone.
    pub server_name: Option<String>,
    /// Cluster membership, with the routes' shared secret.
    pub cluster: Option<ClusterSettings>,
}

/// A cluster's routes: every server of it includes the same block, so the routes authenticate with one secret of the
/// deployment's, and a server without it cannot join (and so bypass the users above). Its `Debug` withholds the secret.
#[derive(Clone)]
pub struct ClusterSettings {
    pub name: String,
    /// Where this server listens for routes.
    pub listen: String,
    /// Every member's route address (`host:port`), this server's included: a server skips a route to itself.
    pub routes: Vec<String>,
    /// The routes' password (a random hex string `airlock nats-config` keeps beside the seeds).
    pub secret: String,
}

impl std::fmt::Debug for ClusterSettings {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ClusterSettings")
            .field("name", &self.name)
            .field("listen", &self.listen)
            .field("routes", &self.routes)
            .finish_non_exhaustive()
    }
}

/// The user name routes authenticate as.
pub const ROUTE_USER: &str = "route";

/// What one user may do.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Permissions {
    pub publish_allow: Vec<String>,
    pub publish_deny: Vec<String>,
    pub subscribe_allow: Vec<String>,
    /// May answer requests sent to it (airlock answers case queries on the asker's inbox).
    pub allow_responses: bool,
}

/// The private inbox prefix of the holder of `public_key`: clients must set it (async-nats `custom_inbox_prefix`,
/// nats-py `inbox_prefix`), since no user may read any other inbox.
pub fn inbox_prefix(public_key: &str) -> String {
    format!("_INBOX.{public_key}")
}

/// The command types an actor of `role` may send: those whose core command allows the role.
pub fn commands_of(role: Role) -> Vec<CommandType> {
    CommandType::ALL.into_iter().filter(|command| command.allowed_for(role)).collect()
}

/// The streams airlock creates and uses.
fn streams() -> Vec<String> {
    let intake = IntakeConfig::default();
    vec![
        JetStreamConfig::default().stream_name,
        intake.intake_stream,
        intake.results_stream,
        intake.dead_letter_stream,
        format!("KV_{LEDGER_BUCKET}"),
        NOTIFY_STREAM.to_string(),
    ]
}

/// The streams whose configuration nobody may change once they exist, airlock included: the event log (a stream
/// update could set a limit that discards a case's history) and the request ledgers (one could expire the counts).
fn immutable_streams() -> Vec<String> {
    vec![JetStreamConfig::default().stream_name, format!("KV_{LEDGER_BUCKET}")]
}

/// The JetStream API calls nobody but airlock may make, and that airlock does not make either: deleting or purging a
/// stream, or deleting a message from one.
const DESTRUCTIVE_API: [&str; 3] = ["$JS.API.STREAM.DELETE.>", "$JS.API.STREAM.PURGE.>", "$JS.API.STREAM.MSG.DELETE.>"];

/// airlock's own user: writes the event log, answers and dead letters and the request ledgers, creates and reads
/// its own streams and consumers, takes every intake message, answers queries. Nothing else: no other stream, no
/// destructive API call, no account or server administration.
pub fn airlock_permissions(public_key: &str) -> Permissions {
    let prefix = IntakeConfig::default().prefix;
    let events = JetStreamConfig::default().subject_prefix;
    let mut publish_allow = vec![
        format!("{events}.>"),
        format!("{prefix}.result.>"),
        format!("{prefix}.deadletter.>"),
        format!("{NOTIFY_PREFIX}.>"),
        format!("$KV.{LEDGER_BUCKET}.>"),
        "$JS.API.INFO".to_string(),
    ];
    let immutable = immutable_streams();
    for stream in streams() {
        for api in ["STREAM.CREATE", "STREAM.UPDATE", "STREAM.INFO", "STREAM.MSG.GET", "DIRECT.GET"] {
            if api == "STREAM.UPDATE" && immutable.contains(&stream) {
                continue;
            }
            publish_allow.push(format!("$JS.API.{api}.{stream}"));
        }
        publish_allow.extend([
            format!("$JS.API.DIRECT.GET.{stream}.>"),
            format!("$JS.API.CONSUMER.*.{stream}"),
            format!("$JS.API.CONSUMER.*.{stream}.>"),
            format!("$JS.API.CONSUMER.DURABLE.CREATE.{stream}.>"),
            format!("$JS.API.CONSUMER.MSG.NEXT.{stream}.>"),
            format!("$JS.ACK.{stream}.>"),
            format!("$JS.FC.{stream}.>"),
        ]);
    }
    let mut publish_deny: Vec<String> = DESTRUCTIVE_API.iter().map(ToString::to_string).collect();
    publish_deny.extend(immutable.iter().map(|stream| format!("$JS.API.STREAM.UPDATE.{stream}")));
    Permissions {
        publish_allow,
        publish_deny,
        subscribe_allow: [
            vec![format!("{}.>", inbox_prefix(public_key)), format!("{prefix}.query.*.*")],
            micro_service_subjects(),
        ]
        .concat(),
        allow_responses: true,
    }
}

/// The discovery subjects of airlock's query service (the NATS micro service protocol, ADR-32): `$SRV.<verb>` for
/// every service, `$SRV.<verb>.airlock` for airlock's, and `$SRV.<verb>.airlock.<instance>` for one process.
fn micro_service_subjects() -> Vec<String> {
    let name = crate::intake::nats::QUERY_SERVICE;
    ["PING", "INFO", "STATS"]
        .into_iter()
        .flat_map(|verb| [format!("$SRV.{verb}"), format!("$SRV.{verb}.{name}"), format!("$SRV.{verb}.{name}.*")])
        .collect()
}

/// An actor's user: publish its role's commands under its own id and ask about cases under its own id; read its
/// own answers and its private inbox. Everything else is refused by the broker; the deny list repeats the most
/// dangerous of it, so that a later widening of the allow list cannot open them by accident.
pub fn actor_permissions(role: Role, id: &str, public_key: &str) -> Permissions {
    let prefix = IntakeConfig::default().prefix;
    let actor = crate::core::actor::Actor::new(role, id);
    let mut publish_allow: Vec<String> =
        commands_of(role).into_iter().map(|command| subjects::intake(&prefix, &actor, command)).collect();
    publish_allow.push(subjects::query(&prefix, &actor));
    // Operators run the deployment: they may ask airlock's query service to describe itself (`nats micro info`).
    if role == Role::Operator {
        publish_allow.extend(micro_service_subjects());
    }
    let events = JetStreamConfig::default().subject_prefix;
    Permissions {
        publish_allow,
        publish_deny: vec![
            "$JS.>".to_string(),
            "$KV.>".to_string(),
            "$SYS.>".to_string(),
            format!("{events}.>"),
            format!("{prefix}.result.>"),
            format!("{prefix}.deadletter.>"),
        ],
        subscribe_allow: vec![format!("{}.>", inbox_prefix(public_key)), subjects::result(&prefix, &actor)],
        allow_responses: false,
    }
}

/// An integrator's user (a SIEM, a ticketing system: issue 20, item 2): reads the redacted case and alert events of
/// `AIRLOCK_NOTIFY` through its own durable consumer (`integrator-<id>`, which `serve --integrator` creates: read and
/// acknowledged by it alone), or live on their public subjects; nothing else. It may not publish to any subject airlock reads, nor
/// reach another stream or another consumer.
pub fn integrator_permissions(id: &str, public_key: &str) -> Permissions {
    let consumer = integrator_consumer(id);
    let stream = NOTIFY_STREAM;
    let prefix = IntakeConfig::default().prefix;
    let events = JetStreamConfig::default().subject_prefix;
    Permissions {
        publish_allow: vec![
            "$JS.API.INFO".to_string(),
            format!("$JS.API.STREAM.INFO.{stream}"),
            // Its consumer, which airlock creates (`serve --integrator`): never a consumer of its own making, whose
            // configuration could deliver to any subject (the broker does not check a deliver subject against the
            // creator's permissions).
            format!("$JS.API.CONSUMER.INFO.{stream}.{consumer}"),
            format!("$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}"),
            format!("$JS.ACK.{stream}.{consumer}.>"),
        ],
        publish_deny: vec![
            "$KV.>".to_string(),
            "$SYS.>".to_string(),
            format!("{events}.>"),
            format!("{NOTIFY_PREFIX}.>"),
            format!("{prefix}.>"),
            "$JS.API.STREAM.DELETE.>".to_string(),
            "$JS.API.STREAM.PURGE.>".to_string(),
            "$JS.API.STREAM.MSG.DELETE.>".to_string(),
            "$JS.API.STREAM.UPDATE.>".to_string(),
            "$JS.API.CONSUMER.CREATE.>".to_string(),
            "$JS.API.CONSUMER.DURABLE.CREATE.>".to_string(),
            "$JS.API.CONSUMER.DELETE.>".to_string(),
        ],
        subscribe_allow: vec![format!("{}.>", inbox_prefix(public_key)), format!("{NOTIFY_PREFIX}.>")],
        allow_responses: false,
    }
}

fn quoted_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|item| format!("{item:?}")).collect();
    format!("[{}]", quoted.join(", "))
}

fn user_block(user: &User, permissions: &Permissions) -> String {
    let who = match user.role {
        Some(role) => format!("{role} {}: publishes as {role}.{}", user.id, user.id),
        None if user.id == "airlock" => "airlock itself".to_string(),
        None => format!(
            "integrator {}: reads {NOTIFY_STREAM} through its consumer {}",
            user.id,
            integrator_consumer(&user.id)
        ),
    };
    let mut text = format!(
        "    # {who}\n    {{\n      nkey: {}\n      permissions: {{\n        publish: {{\n          allow: {}\n",
        user.public_key,
        quoted_list(&permissions.publish_allow)
    );
    if !permissions.publish_deny.is_empty() {
        text.push_str(&format!("          deny: {}\n", quoted_list(&permissions.publish_deny)));
    }
    text.push_str(&format!(
        "        }}\n        subscribe: {{\n          allow: {}\n        }}\n",
        quoted_list(&permissions.subscribe_allow)
    ));
    if permissions.allow_responses {
        text.push_str("        allow_responses: true\n");
    }
    text.push_str("      }\n    }\n");
    text
}

/// The whole configuration: listen address, JetStream with `sync_interval: always`, and the users. Anonymous
/// connections are refused (there is no `no_auth_user`).
/// Integrators are users without a role (`role: None`) among `actors`.
pub fn config(settings: &ServerSettings, airlock_key: &str, actors: &[User]) -> String {
    let mut text = String::from(
        "# Written by `airlock nats-config`. One nkey user per actor: each role may publish only the commands it may\n\
         # send, only under its own actor id, and read only its own answers and its private inbox (_INBOX.<its public\n\
         # key>). Only airlock may write the event log or call the JetStream API, and nobody may delete or purge a\n\
         # stream. The seeds are not in this file; run `airlock nats-config` again to add actors (keys are kept).\n",
    );
    if let Some(name) = &settings.server_name {
        text.push_str(&format!("server_name: {name:?}\n"));
    }
    text.push_str(&format!(
        "listen: {:?}\n\njetstream {{\n  store_dir: {:?}\n  # Every acknowledged message is on disk before the \
         acknowledgement.\n  sync_interval: always\n}}\n\n",
        settings.listen, settings.store_dir
    ));
    if let Some(cluster) = &settings.cluster {
        text.push_str(&cluster_block(cluster));
    }
    text.push_str("authorization {\n  users: [\n");
    let airlock = User { role: None, id: "airlock".into(), public_key: airlock_key.to_string() };
    text.push_str(&user_block(&airlock, &airlock_permissions(airlock_key)));
    for user in actors {
        let permissions = match user.role {
            Some(role) => actor_permissions(role, &user.id, &user.public_key),
            None => integrator_permissions(&user.id, &user.public_key),
        };
        text.push_str(&user_block(user, &permissions));
    }
    text.push_str("  ]\n}\n");
    text
}

/// The `cluster` block: routes authenticate as `ROUTE_USER` with the deployment's secret, both ways.
fn cluster_block(cluster: &ClusterSettings) -> String {
    let routes: Vec<String> = cluster
        .routes
        .iter()
        .map(|route| format!("    {:?}\n", format!("nats-route://{ROUTE_USER}:{}@{route}", cluster.secret)))
        .collect();
    format!(
        "# A server joins the cluster only with the routes' secret (seeds/cluster-route.secret); this file holds it, so\n\
         # it is readable by its owner only.\ncluster {{\n  name: {:?}\n  listen: {:?}\n  authorization {{\n    user: \
         {ROUTE_USER:?}\n    password: {:?}\n  }}\n  routes: [\n{}  ]\n}}\n\n",
        cluster.name,
        cluster.listen,
        cluster.secret,
        routes.concat()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves the routes' secret is in the configuration it is for and in no `Debug` of the settings holding it.
    #[test]
    fn the_route_secret_shows_in_no_debug() {
        let cluster = ClusterSettings {
            name: "c".into(),
            listen: "127.0.0.1:6222".into(),
            routes: vec!["n1:6222".into()],
            secret: "f00dfeed".repeat(8),
        };
        let settings = ServerSettings {
            listen: "127.0.0.1:4222".into(),
            store_dir: "/data".into(),
            server_name: None,
            cluster: Some(cluster.clone()),
        };
        assert!(!format!("{settings:?} {cluster:?}").contains("f00dfeed"));
        assert!(config(&settings, "UAIR", &[]).contains(&"f00dfeed".repeat(8)));
    }

    // Proves each role is allowed exactly the commands its core command allows, and that no actor's allow list
    // names another actor, the event log or the JetStream API.
    #[test]
    fn actors_publish_only_their_own_commands() {
        let names = |role| commands_of(role).into_iter().map(subjects::command_token).collect::<Vec<_>>();
        assert_eq!(names(Role::Intake), ["request_recovery"]);
        assert_eq!(names(Role::Owner), ["request_recovery", "submit_proof", "cancel"]);
        assert_eq!(names(Role::Reviewer), ["review_decision"]);
        assert_eq!(names(Role::Operator), ["cancel", "roll_back", "halt", "resume", "acknowledge_alert"]);
        let permissions = actor_permissions(Role::Intake, "desk", "UKEY");
        assert_eq!(
            permissions.publish_allow,
            ["airlock.intake.intake.desk.request_recovery", "airlock.query.intake.desk"]
        );
        assert_eq!(permissions.subscribe_allow, ["_INBOX.UKEY.>", "airlock.result.intake.desk"]);
        assert!(permissions.publish_deny.contains(&"$JS.>".to_string()));
        assert!(!permissions.allow_responses);
        let airlock = airlock_permissions("UAIR");
        assert!(airlock.publish_deny.contains(&"$JS.API.STREAM.PURGE.>".to_string()));
        assert!(airlock.publish_allow.iter().all(|subject| !subject.contains("DELETE") && !subject.contains("PURGE")));
        assert!(airlock.publish_deny.contains(&"$JS.API.STREAM.UPDATE.AIRLOCK_EVENTS".to_string()));
        assert!(
            !airlock.publish_allow.iter().any(|subject| subject.starts_with("$JS.API.STREAM.UPDATE.AIRLOCK_EVENTS"))
        );
    }
}
