//! Least privilege at the broker (issue 6): `airlock nats-config` writes a configuration that a real nats-server
//! runs, and the server itself refuses, role by role, every subject that is not the actor's own: other roles'
//! commands, another actor's identity, the event log, other actors' answers and inboxes, and the JetStream API.
//! airlock runs the whole workflow under its own restricted user, and cannot delete or purge a stream either.

use crate::common;

use airlock::nats::server::{NatsServer, free_port};
use common::serve::ServeProcess;
use common::threats::{add_email, email_account, request_body, reset_password};
use common::{import_accounts, scratch};
use futures::StreamExt;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn nats_config(out: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_airlock")).arg("nats-config").arg("--out").arg(out).args(args).output().unwrap()
}

const ACTORS: [&str; 14] = [
    "--intake",
    "desk",
    "--intake",
    "agent",
    "--owner",
    "verification-page",
    "--reviewer",
    "ana",
    "--operator",
    "ops",
    "--reviewer",
    "ben",
    "--integrator",
    "siem",
];

/// A connection as the holder of one seed file, with every error the server sent it.
struct Session {
    client: async_nats::Client,
    errors: Arc<Mutex<Vec<String>>>,
    public_key: String,
}

async fn connect(url: &str, seed_file: Option<&Path>) -> Result<Session, async_nats::ConnectError> {
    let errors = Arc::new(Mutex::new(Vec::new()));
    let seen = errors.clone();
    let mut options = async_nats::ConnectOptions::new().event_callback(move |event| {
        let seen = seen.clone();
        async move {
            if let async_nats::Event::ServerError(error) = event {
                seen.lock().unwrap().push(error.to_string());
            }
        }
    });
    let mut public_key = String::new();
    if let Some(path) = seed_file {
        let text = std::fs::read_to_string(path).unwrap();
        let seed = text.trim().to_string();
        public_key = nkeys::KeyPair::from_seed(&seed).unwrap().public_key();
        options = options.nkey(seed).custom_inbox_prefix(format!("_INBOX.{public_key}"));
    }
    let client = options.connection_timeout(Duration::from_secs(5)).connect(url).await?;
    Ok(Session { client, errors, public_key })
}

impl Session {
    /// Waits up to 5 s for the server to report a permissions violation naming `subject`.
    async fn violation(&self, what: &str, subject: &str) -> bool {
        let wanted = format!("permissions violation for {what} to \"{}\"", subject.to_lowercase());
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if self.errors.lock().unwrap().iter().any(|error| error.to_lowercase().contains(&wanted)) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    /// Publishes to `subject` and asserts the broker refused it.
    async fn publish_refused(&self, who: &str, subject: &str) {
        self.client.publish(subject.to_string(), "{}".into()).await.unwrap();
        self.client.flush().await.unwrap();
        assert!(self.violation("publish", subject).await, "{who} was not refused publishing to {subject}");
    }

    /// Subscribes to `subject` and asserts the broker refused it.
    async fn subscribe_refused(&self, who: &str, subject: &str) {
        let _subscription = self.client.subscribe(subject.to_string()).await.unwrap();
        self.client.flush().await.unwrap();
        assert!(self.violation("subscription", subject).await, "{who} was not refused subscribing to {subject}");
    }

    /// Publishes a command on its own subject through JetStream, and returns airlock's answer to it.
    async fn command(&self, subject: &str, result_subject: &str, body: Value) -> Value {
        let mut answers = self.client.subscribe(result_subject.to_string()).await.unwrap();
        self.client.flush().await.unwrap();
        let context = async_nats::jetstream::new(self.client.clone());
        let ack = context.publish(subject.to_string(), body.to_string().into()).await.unwrap().await.unwrap();
        let wanted = ack.sequence.to_string();
        let answer = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(message) = answers.next().await {
                let sequence = message.headers.as_ref().and_then(|headers| headers.get("Airlock-Intake-Sequence"));
                if sequence.is_some_and(|value| value.as_str() == wanted) {
                    return serde_json::from_slice::<Value>(&message.payload).unwrap();
                }
            }
            panic!("the answer subscription ended");
        });
        let answer = answer.await.expect("airlock answered within a minute");
        assert!(self.errors.lock().unwrap().is_empty(), "an allowed command was refused: {:?}", self.errors);
        answer
    }
}

/// Whether the owner's code is in the outbox yet: notices go out after the requester's answer is stored.
fn code_sent(data: &Path, case_id: &str) -> bool {
    let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY;
    let Ok(connection) = rusqlite::Connection::open_with_flags(data.join("directory.db"), flags) else { return false };
    let count = connection.query_row("SELECT count(*) FROM outbox WHERE case_id = ?1", [case_id], |row| row.get(0));
    count.unwrap_or(0) > 0
}

struct Broker {
    _server: NatsServer,
    url: String,
    seeds: PathBuf,
    config: PathBuf,
}

fn start_broker(directory: &Path) -> Broker {
    let port = free_port().unwrap();
    let out = directory.join("nats");
    let listen = format!("127.0.0.1:{port}");
    let store = directory.join("jetstream");
    let mut args = vec!["--listen", &listen, "--store-dir", store.to_str().unwrap()];
    args.extend(ACTORS);
    let output = nats_config(&out, &args);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let config = out.join("nats.conf");
    let server = NatsServer::start_with_config(&config, port, &directory.join("nats-logs")).unwrap();
    Broker { url: server.url(), _server: server, seeds: out.join("seeds"), config }
}

/// A deployment as `airlock nats-config` describes it: the broker with every actor's key, and `airlock serve`
/// connected as its own restricted user on a data directory holding `accounts`.
fn deployment(directory: &Path, accounts: Value) -> (Broker, ServeProcess, PathBuf) {
    let broker = start_broker(directory);
    let data = directory.join("data");
    import_accounts(&data, accounts);
    let airlock_seed = broker.seeds.join("airlock.nk");
    let serve = ServeProcess::start(
        &broker.url,
        &data,
        &directory.join("serve.log"),
        &["--nats-nkey", airlock_seed.to_str().unwrap(), "--integrator", "siem"],
        &[],
    );
    (broker, serve, data)
}

// Proves the command writes a configuration nats-server accepts, durable and without a secret in it; that every seed
// is readable by its owner only and kept when the command runs again (adding an actor changes nobody else's key);
// and that bad actor ids and duplicates are usage errors that write nothing.
#[test]
fn nats_config_writes_a_valid_durable_configuration_and_private_seeds() {
    use std::os::unix::fs::PermissionsExt;
    let directory = scratch();
    let out = directory.path().join("nats");
    let first = nats_config(&out, &[&ACTORS[..], &["--json"]].concat());
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let report: Value = serde_json::from_slice(&first.stdout).unwrap();
    let users = report["users"].as_array().unwrap();
    assert_eq!(users.len(), 8, "airlock, six actors and an integrator: {report}");
    assert_eq!(users[0]["role"], "airlock");
    let config = std::fs::read_to_string(out.join("nats.conf")).unwrap();
    assert!(config.contains("sync_interval: always"));
    assert!(!config.contains("no_auth_user"));
    let check = Command::new(airlock::nats::server::binary()).arg("-t").arg("-c").arg(out.join("nats.conf")).output();
    let check = check.unwrap();
    assert!(check.status.success(), "nats-server -t: {}", String::from_utf8_lossy(&check.stderr));
    for user in users {
        let seed_file = PathBuf::from(user["seed_file"].as_str().unwrap());
        let mode = std::fs::metadata(&seed_file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", seed_file.display());
        let seed = std::fs::read_to_string(&seed_file).unwrap();
        assert!(seed.starts_with("SU"), "a user seed");
        assert!(!config.contains(seed.trim()), "a seed is in the configuration");
        assert!(!String::from_utf8_lossy(&first.stdout).contains(seed.trim()), "a seed was printed");
        let public_key = user["public_key"].as_str().unwrap();
        assert_eq!(config.matches(public_key).count(), 2, "the key and its inbox: {public_key}");
        assert_eq!(user["new"], true);
    }
    let mode = std::fs::metadata(out.join("seeds")).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);

    let again = nats_config(&out, &[&ACTORS[..], &["--intake", "new-desk", "--json"]].concat());
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    let second: Value = serde_json::from_slice(&again.stdout).unwrap();
    let second = second["users"].as_array().unwrap();
    assert_eq!(second.len(), 9);
    for after in second {
        match users.iter().find(|before| before["id"] == after["id"] && before["role"] == after["role"]) {
            Some(before) => {
                assert_eq!(before["public_key"], after["public_key"], "a key changed on a re-run");
                assert_eq!(after["new"], false);
            }
            None => assert_eq!((&after["id"], &after["new"]), (&json!("new-desk"), &json!(true))),
        }
    }

    for bad in [&["--intake", "desk.other"][..], &["--reviewer", "ana", "--reviewer", "ana"], &["--operator", ""]] {
        let fresh = directory.path().join("refused");
        let output = nats_config(&fresh, bad);
        assert_eq!(output.status.code(), Some(2), "{bad:?}: {}", String::from_utf8_lossy(&output.stderr));
        assert!(!fresh.exists(), "{bad:?} wrote something");
    }
}

// Proves, on a real nats-server running the generated configuration, with `airlock serve` connected as its own
// restricted user: each actor's own commands go through and are answered on its own result subject, and its queries
// are answered on its private inbox; every other role's subjects, another actor's identity, commands its role may not
// send, the event log, the answers and inboxes of others and the JetStream admin API are refused by the broker
// itself; strangers cannot connect; airlock cannot delete or purge a stream; and the event log is intact afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_refuses_every_subject_but_the_actors_own() {
    let directory = scratch();
    let (broker, serve, data) = deployment(directory.path(), json!([email_account("acct-1")]));

    // The desk opens a case on its own subject and reads the answer on its own result subject.
    let desk = connect(&broker.url, Some(&broker.seeds.join("intake.desk.nk"))).await.unwrap();
    let request = request_body("cmd-1", "acct-1", reset_password(), "customer locked out", json!({}));
    let answer =
        desk.command("airlock.intake.intake.desk.request_recovery", "airlock.result.intake.desk", request).await;
    assert_eq!(answer["accepted"], true, "{answer}");
    let case_id = answer["case_id"].as_str().unwrap().to_string();
    let status = desk
        .client
        .request("airlock.query.intake.desk", json!({ "case_id": case_id }).to_string().into())
        .await
        .expect("a query on its own subject is answered on its private inbox");
    let status: Value = serde_json::from_slice(&status.payload).unwrap();
    assert_eq!(status["status"], "pending", "{status}");

    // The owners' front door proves with the code; the operator pulls and releases the kill switch.
    let page = connect(&broker.url, Some(&broker.seeds.join("owner.verification-page.nk"))).await.unwrap();
    common::wait_for(|| code_sent(&data, &case_id), "the code to reach the outbox");
    let code = common::code_for(&data, &case_id);
    let proof = json!({ "version": 1, "command_id": "proof-1", "case_id": case_id, "code": code });
    let answer = page
        .command("airlock.intake.owner.verification-page.submit_proof", "airlock.result.owner.verification-page", proof)
        .await;
    assert_eq!(answer["status"], "cooling_off", "{answer}");
    let ops = connect(&broker.url, Some(&broker.seeds.join("operator.ops.nk"))).await.unwrap();
    let halt = json!({ "version": 1, "command_id": "halt-1", "reason": "drill" });
    let answer = ops.command("airlock.intake.operator.ops.halt", "airlock.result.operator.ops", halt).await;
    assert_eq!(answer["status"], "halted", "{answer}");

    // The example support desk (Python, nats-py) works within the same permissions, as the agent actor.
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/nats/support_desk.py");
    let agent_seed = broker.seeds.join("intake.agent.nk");
    let output = Command::new("python3")
        .args([example, &broker.url, agent_seed.to_str().unwrap(), "agent", "acct-1"])
        .output()
        .unwrap();
    assert!(output.status.success(), "the nats-py example failed: {}", String::from_utf8_lossy(&output.stderr));
    let example: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(example["answer"]["status"], "received", "{example}");
    assert_eq!(example["status"]["status"], "pending", "{example}");

    // An AI agent's MCP server over NATS holds only the agent actor's key: its request and status work, misuse fails.
    let agent_seed = agent_seed.to_str().unwrap();
    let mcp = common::mcp::start_http(&["--requester", "agent", "--nats", &broker.url, "--nats-nkey", agent_seed]);
    let session = common::mcp::agent_session(&data, Some(&mcp.url));
    drop(mcp);
    let opened: Value = serde_json::from_str(session["calls"]["request"]["text"].as_str().unwrap()).unwrap();
    assert_eq!(opened["status"], "received", "{session}");
    let status: Value = serde_json::from_str(session["calls"]["status"]["text"].as_str().unwrap()).unwrap();
    assert_eq!(status["status"], "pending", "{session}");
    assert_eq!(session["calls"]["code_in_account"]["error"], true);

    // Role by role: everything but the actor's own is refused at the broker.
    let ana = connect(&broker.url, Some(&broker.seeds.join("reviewer.ana.nk"))).await.unwrap();
    let sessions = [("intake desk", &desk, "intake.desk"), ("owner page", &page, "owner.verification-page")];
    let sessions =
        [&sessions[..], &[("reviewer ana", &ana, "reviewer.ana"), ("operator ops", &ops, "operator.ops")]].concat();
    let every_command =
        ["request_recovery", "submit_proof", "review_decision", "cancel", "roll_back", "halt", "resume"];
    let own_commands: [(&str, &[&str]); 4] = [
        ("intake.desk", &["request_recovery"]),
        ("owner.verification-page", &["request_recovery", "submit_proof", "cancel"]),
        ("reviewer.ana", &["review_decision"]),
        ("operator.ops", &["cancel", "roll_back", "halt", "resume"]),
    ];
    let strangers = ["intake.agent", "owner.mallory", "reviewer.ben", "operator.root", "system.airlock"];
    for (who, session, own) in &sessions {
        let allowed = own_commands.iter().find(|(actor, _)| actor == own).unwrap().1;
        for command in every_command {
            // Other actors' identities, whatever the command.
            for other in strangers.iter().chain(own_commands.iter().map(|(actor, _)| actor)) {
                if other != own {
                    session.publish_refused(who, &format!("airlock.intake.{other}.{command}")).await;
                }
            }
            // Its own identity, but a command its role may not send.
            if !allowed.contains(&command) {
                session.publish_refused(who, &format!("airlock.intake.{own}.{command}")).await;
            }
        }
        session.publish_refused(who, "airlock.query.intake.agent").await;
        for subject in [
            format!("airlock.event.case.{case_id}"),
            "airlock.event.control".to_string(),
            format!("airlock.result.{own}"),
            "airlock.deadletter.unknown".to_string(),
            "$KV.AIRLOCK_LEDGERS.account.acct-1".to_string(),
            "$JS.API.STREAM.DELETE.AIRLOCK_EVENTS".to_string(),
            "$JS.API.STREAM.PURGE.AIRLOCK_EVENTS".to_string(),
            "$JS.API.STREAM.UPDATE.AIRLOCK_EVENTS".to_string(),
            "$JS.API.STREAM.CREATE.EVIL".to_string(),
            "$JS.API.STREAM.MSG.DELETE.AIRLOCK_EVENTS".to_string(),
            "$JS.API.STREAM.MSG.GET.AIRLOCK_RESULTS".to_string(),
            "$JS.API.DIRECT.GET.AIRLOCK_RESULTS".to_string(),
            "$JS.API.CONSUMER.CREATE.AIRLOCK_INTAKE".to_string(),
            "$JS.API.CONSUMER.DELETE.AIRLOCK_INTAKE.airlock-intake".to_string(),
            "$JS.API.CONSUMER.MSG.NEXT.AIRLOCK_INTAKE.airlock-intake".to_string(),
            "$JS.API.STREAM.LIST".to_string(),
            "$SYS.REQ.SERVER.PING".to_string(),
            format!("airlock.notify.case.{case_id}.case_executed"),
            "$JS.API.CONSUMER.CREATE.AIRLOCK_NOTIFY.integrator-siem".to_string(),
        ] {
            session.publish_refused(who, &subject).await;
        }
        for subject in [
            "airlock.result.>",
            "airlock.result.intake.agent",
            "airlock.intake.>",
            "airlock.event.>",
            "airlock.query.*.*",
            "airlock.notify.>",
            "_INBOX.>",
            ">",
        ] {
            session.subscribe_refused(who, subject).await;
        }
        for other in &sessions {
            if other.2 != *own {
                session.subscribe_refused(who, &format!("_INBOX.{}.>", other.1.public_key)).await;
            }
        }
    }

    // The integrator (issue 20, item 2), with a client nobody here wrote (nats-py), reads the case's redacted events
    // through its own durable consumer of AIRLOCK_NOTIFY, which serve --integrator created: in case order, on their
    // public subjects, with their ids, without a code, an address or the summary.
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/nats/integrator.py");
    let integrator_seed = broker.seeds.join("integrator.siem.nk");
    let output = Command::new("python3")
        .args([example, &broker.url, integrator_seed.to_str().unwrap(), "siem", "4"])
        .output()
        .unwrap();
    assert!(output.status.success(), "the nats-py integrator failed: {}", String::from_utf8_lossy(&output.stderr));
    let events: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap();
    let ours: Vec<&Value> = events.iter().filter(|event| event["document"]["data"]["case_id"] == case_id).collect();
    let types: Vec<&str> = ours.iter().map(|event| event["type"].as_str().unwrap()).collect();
    assert_eq!(types[..2], ["case.recovery_requested", "case.challenge_issued"], "{events:#?}");
    let versions: Vec<u64> =
        ours.iter().map(|event| event["document"]["data"]["case_version"].as_u64().unwrap()).collect();
    assert_eq!(versions, (1..=versions.len() as u64).collect::<Vec<_>>(), "in case order, each once: {events:#?}");
    for event in &ours {
        let kind = event["type"].as_str().unwrap().trim_start_matches("case.");
        assert_eq!(event["subject"], format!("airlock.notify.case.{case_id}.{kind}"), "{event}");
        assert!(event["id"].as_str().is_some_and(|id| id.split('.').count() == 3), "{event}");
    }
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(!text.contains(&code) && !text.contains("acct-1@") && !text.contains("customer locked out"), "{text}");
    let siem = connect(&broker.url, Some(&integrator_seed)).await.unwrap();
    for subject in [
        format!("airlock.notify.case.{case_id}.case_executed"),
        "airlock.notify.alert.alert_raised".to_string(),
        format!("airlock.event.case.{case_id}"),
        "airlock.intake.intake.desk.request_recovery".to_string(),
        "airlock.intake.integrator.siem.request_recovery".to_string(),
        "airlock.query.intake.desk".to_string(),
        "airlock.deadletter.unknown".to_string(),
        "$KV.AIRLOCK_LEDGERS.account.acct-1".to_string(),
        // Not even its own consumer may it create (or replace): a push consumer's deliver subject is not checked
        // against its permissions, so it could have the server write the stream into the log or the intake.
        "$JS.API.CONSUMER.CREATE.AIRLOCK_NOTIFY.integrator-siem".to_string(),
        "$JS.API.CONSUMER.CREATE.AIRLOCK_NOTIFY.integrator-siem.airlock.notify.>".to_string(),
        "$JS.API.CONSUMER.DURABLE.CREATE.AIRLOCK_NOTIFY.integrator-siem".to_string(),
        "$JS.API.CONSUMER.DELETE.AIRLOCK_NOTIFY.integrator-siem".to_string(),
        "$JS.API.CONSUMER.CREATE.AIRLOCK_NOTIFY.integrator-other".to_string(),
        "$JS.API.CONSUMER.CREATE.AIRLOCK_NOTIFY".to_string(),
        "$JS.API.CONSUMER.MSG.NEXT.AIRLOCK_NOTIFY.integrator-other".to_string(),
        "$JS.API.CONSUMER.DELETE.AIRLOCK_NOTIFY.integrator-other".to_string(),
        "$JS.API.CONSUMER.CREATE.AIRLOCK_EVENTS.integrator-siem".to_string(),
        "$JS.API.CONSUMER.MSG.NEXT.AIRLOCK_EVENTS.airlock-notify".to_string(),
        "$JS.API.CONSUMER.DELETE.AIRLOCK_EVENTS.airlock-notify".to_string(),
        "$JS.API.STREAM.MSG.GET.AIRLOCK_EVENTS".to_string(),
        "$JS.API.DIRECT.GET.AIRLOCK_EVENTS".to_string(),
        "$JS.API.STREAM.INFO.AIRLOCK_EVENTS".to_string(),
        "$JS.API.STREAM.LIST".to_string(),
        "$JS.API.STREAM.NAMES".to_string(),
        "$JS.API.STREAM.DELETE.AIRLOCK_NOTIFY".to_string(),
        "$JS.API.STREAM.PURGE.AIRLOCK_NOTIFY".to_string(),
        "$JS.API.STREAM.UPDATE.AIRLOCK_NOTIFY".to_string(),
        "$JS.API.STREAM.MSG.DELETE.AIRLOCK_NOTIFY".to_string(),
        "$SYS.REQ.SERVER.PING".to_string(),
    ] {
        siem.publish_refused("integrator siem", &subject).await;
    }
    for subject in [
        "airlock.event.>",
        "airlock.result.>",
        "airlock.intake.>",
        "airlock.deadletter.>",
        "airlock.query.*.*",
        "$KV.>",
        "_INBOX.>",
        ">",
    ] {
        siem.subscribe_refused("integrator siem", subject).await;
    }
    siem.subscribe_refused("integrator siem", &format!("_INBOX.{}.>", desk.public_key)).await;

    // Strangers: no credentials, or a key the configuration does not list.
    assert!(connect(&broker.url, None).await.is_err(), "an anonymous connection was accepted");
    let stranger_seed = directory.path().join("stranger.nk");
    std::fs::write(&stranger_seed, nkeys::KeyPair::new_user().seed().unwrap()).unwrap();
    assert!(connect(&broker.url, Some(&stranger_seed)).await.is_err(), "an unknown key was accepted");

    // airlock itself cannot destroy the log.
    let airlock = connect(&broker.url, Some(&broker.seeds.join("airlock.nk"))).await.unwrap();
    for subject in [
        "$JS.API.STREAM.DELETE.AIRLOCK_EVENTS",
        "$JS.API.STREAM.PURGE.AIRLOCK_EVENTS",
        "$JS.API.STREAM.MSG.DELETE.AIRLOCK_EVENTS",
        "$JS.API.STREAM.DELETE.KV_AIRLOCK_LEDGERS",
        "$JS.API.STREAM.PURGE.AIRLOCK_DEADLETTER",
        "$JS.API.STREAM.UPDATE.AIRLOCK_EVENTS",
        "$JS.API.STREAM.UPDATE.KV_AIRLOCK_LEDGERS",
    ] {
        airlock.publish_refused("airlock", subject).await;
    }
    let context = async_nats::jetstream::new(airlock.client.clone());
    let mut events = context.get_stream("AIRLOCK_EVENTS").await.unwrap();
    // Issue 15, item 3: not even airlock's key may change the log's limits (one per subject would erase histories).
    let mut shrunk = events.info().await.unwrap().config.clone();
    shrunk.max_messages_per_subject = 1;
    let updated = tokio::time::timeout(std::time::Duration::from_secs(10), context.update_stream(shrunk)).await;
    assert!(!matches!(updated, Ok(Ok(_))), "airlock's key changed the event log's limits: {updated:?}");
    let info = events.info().await.unwrap();
    assert_eq!(info.config.max_messages_per_subject, -1, "the log's limits are unchanged");
    assert!(info.state.messages >= 4, "the case's events and the kill switch's are still there: {:?}", info.state);
    assert_eq!(info.state.first_sequence, 1, "nothing was removed from the start of the log");
    // The projector, under the same user, kept up: the case reads as cooling off in the projection.
    common::wait_for(
        || {
            let shown = common::serve::airlock(&data, &["case", "show", &case_id, "--json"]);
            String::from_utf8_lossy(&shown.stdout).contains("\"cooling_off\"")
        },
        "the projection to show the case cooling off",
    );
    let log = serve.log();
    assert!(!log.to_lowercase().contains("permissions violation"), "airlock was refused something it needs:\n{log}");
    drop(serve);
    assert!(broker.config.exists());
}

fn airlock(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_airlock")).args(args).output().unwrap()
}

fn projection_halted(data: &Path) -> Option<bool> {
    let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY;
    let connection = rusqlite::Connection::open_with_flags(data.join("projection.db"), flags).ok()?;
    connection.query_row("SELECT halted FROM control WHERE id = 1", [], |row| row.get(0)).ok()
}

// Proves issue 17's kill switch, cancel and rollback for an operator of a live NATS deployment, through the binary:
// with the operator's own key from `airlock nats-config`, `airlock cancel --nats` stops a change in cooling-off;
// `airlock halt --nats` is recorded by the running service as that
// operator and read back before it says "halted", and the running service's projection shows it; `resume` releases
// it. A `--operator` that disagrees with the key, and a reviewer's key, are refused at once naming both, with nothing
// sent. `rollback` of a case that never executed reaches the service and is refused by it; `rollback --match --dry-run`
// lists through the service. And `halt` pointed at the service's data directory (a NATS deployment's projection)
// refuses without printing "halted", and writes no local log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_works_the_live_deployment_with_their_own_key() {
    let directory = scratch();
    let (broker, _serve, data) = deployment(directory.path(), json!([email_account("acct-1")]));
    let ops = broker.seeds.join("operator.ops.nk");
    let ops = ops.to_str().unwrap();
    let url = broker.url.as_str();

    // A change waiting out its cooling-off, cancelled by the operator over NATS.
    let desk = connect(url, Some(&broker.seeds.join("intake.desk.nk"))).await.unwrap();
    let request = request_body("cmd-1", "acct-1", reset_password(), "customer locked out", json!({}));
    let answer =
        desk.command("airlock.intake.intake.desk.request_recovery", "airlock.result.intake.desk", request).await;
    let case_id = answer["case_id"].as_str().unwrap().to_string();
    let page = connect(url, Some(&broker.seeds.join("owner.verification-page.nk"))).await.unwrap();
    common::wait_for(|| code_sent(&data, &case_id), "the code to reach the outbox");
    let proof =
        json!({ "version": 1, "command_id": "proof-1", "case_id": case_id, "code": common::code_for(&data, &case_id) });
    let answer = page
        .command("airlock.intake.owner.verification-page.submit_proof", "airlock.result.owner.verification-page", proof)
        .await;
    assert_eq!(answer["status"], "cooling_off", "{answer}");
    let cancelled = airlock(&["cancel", &case_id, "--reason", "owner called", "--nats", url, "--nats-nkey", ops]);
    let stdout = String::from_utf8_lossy(&cancelled.stdout);
    assert_eq!(cancelled.status.code(), Some(0), "{stdout}{}", String::from_utf8_lossy(&cancelled.stderr));
    assert!(stdout.contains(&format!("case {case_id} is cancelled")), "{stdout}");

    let halted = airlock(&["halt", "--reason", "incident 42", "--nats", url, "--nats-nkey", ops]);
    let stdout = String::from_utf8_lossy(&halted.stdout);
    assert_eq!(halted.status.code(), Some(0), "{stdout}{}", String::from_utf8_lossy(&halted.stderr));
    assert!(stdout.contains("automation halted by operator:ops"), "{stdout}");
    common::wait_for(|| projection_halted(&data) == Some(true), "the running service's projection to show halted");

    let resumed = airlock(&["resume", "--reason", "incident 42 closed", "--nats", url, "--nats-nkey", ops]);
    assert_eq!(resumed.status.code(), Some(0), "{}", String::from_utf8_lossy(&resumed.stderr));
    assert!(String::from_utf8_lossy(&resumed.stdout).contains("automation resumed by operator:ops"));
    common::wait_for(|| projection_halted(&data) == Some(false), "the running service's projection to show running");

    // Keys act only as their own actor: refused before anything is sent.
    let ana = broker.seeds.join("reviewer.ana.nk");
    let refusals = [
        (vec!["halt", "--reason", "x", "--operator", "root", "--nats", url, "--nats-nkey", ops], "--operator root"),
        (vec!["halt", "--reason", "x", "--nats", url, "--nats-nkey", ana.to_str().unwrap()], "reviewer ana"),
        (vec!["halt", "--reason", "x", "--nats", url], "--nats-nkey"),
    ];
    for (args, named) in refusals {
        let output = airlock(&args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(named), "{args:?}: {stderr}");
        assert!(!String::from_utf8_lossy(&output.stdout).contains("halted"), "{args:?}");
    }
    // A key under another actor's name passes the name check but not the broker: the refusal is reported at once,
    // as the broker worded it, instead of after the answer's timeout.
    let renamed = directory.path().join("operator.root.nk");
    std::fs::copy(ops, &renamed).unwrap();
    let output = airlock(&["halt", "--reason", "x", "--nats", url, "--nats-nkey", renamed.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_ne!(output.status.code(), Some(0), "{stderr}");
    // The first refusal is either the subscription to the answers or the publish of the command: both name root's.
    assert!(stderr.contains("refused this key: nats: Permissions Violation"), "{stderr}");
    assert!(
        stderr.contains("\"airlock.result.operator.root\"") || stderr.contains("\"airlock.intake.operator.root.halt\""),
        "{stderr}"
    );
    assert!(!String::from_utf8_lossy(&output.stdout).contains("halted"));
    assert_eq!(projection_halted(&data), Some(false), "a refused halt changed the switch");

    let rollback =
        airlock(&["rollback", "case-never-executed", "--reason", "drill", "--nats", url, "--nats-nkey", ops]);
    let stdout = String::from_utf8_lossy(&rollback.stdout);
    assert_eq!(rollback.status.code(), Some(1), "{stdout}{}", String::from_utf8_lossy(&rollback.stderr));
    assert!(stdout.contains("case-never-executed: refused") && stdout.contains("0 rolled back, 1 refused"), "{stdout}");
    let listed = airlock(&[
        "rollback",
        "--match",
        "destination-domain=mailbox.example",
        "--dry-run",
        "--json",
        "--nats",
        url,
        "--nats-nkey",
        ops,
    ]);
    assert_eq!(listed.status.code(), Some(0), "{}", String::from_utf8_lossy(&listed.stderr));
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed, json!({ "dry_run": true, "cases": [] }));

    // The reads are a NATS micro service: an operator's key may ask it to describe itself and count its requests
    // (as `nats micro info/stats airlock` do); a desk's and a reviewer's may not.
    let operator = connect(url, Some(Path::new(ops))).await.unwrap();
    let info = operator.client.request("$SRV.INFO.airlock", "".into()).await.unwrap();
    let info: Value = serde_json::from_slice(&info.payload).unwrap();
    assert_eq!(
        (info["type"].as_str(), info["name"].as_str()),
        (Some("io.nats.micro.v1.info_response"), Some("airlock"))
    );
    let endpoints = info["endpoints"].as_array().unwrap();
    assert!(endpoints.iter().any(|endpoint| endpoint["subject"] == "airlock.query.*.*"), "{info}");
    let stats = operator.client.request("$SRV.STATS.airlock", "".into()).await.unwrap();
    let stats: Value = serde_json::from_slice(&stats.payload).unwrap();
    let served = stats["endpoints"][0]["num_requests"].as_u64().unwrap();
    assert!(served >= 3, "the halt and resume read-backs and the rollback listing were queries: {stats}");
    desk.publish_refused("intake desk", "$SRV.INFO.airlock").await;
    // The queries answer by the role the subject names: a desk learns nothing about the kill switch or rollbacks.
    for query in
        [json!({ "query": "kill_switch" }), json!({ "query": "executed_matching", "match": "source-network=AS1" })]
    {
        let answer = desk.client.request("airlock.query.intake.desk", query.to_string().into()).await.unwrap();
        let answer: Value = serde_json::from_slice(&answer.payload).unwrap();
        assert_eq!(answer["error"]["code"], "role_not_allowed", "{query}: {answer}");
    }
    let reviewer = connect(url, Some(&ana)).await.unwrap();
    reviewer.publish_refused("reviewer ana", "$SRV.PING").await;

    // The service's own data directory is not an embedded store: nothing is written there.
    let misdirected = airlock(&["halt", "--reason", "x", "--data-dir", data.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&misdirected.stderr);
    assert_eq!(misdirected.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("belongs to a NATS deployment") && stderr.contains("--nats"), "{stderr}");
    assert!(!String::from_utf8_lossy(&misdirected.stdout).contains("halted"));
    // Nor does a local front door write there (it would write into the running service's projection).
    let submit = Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(["submit", "--actor", "intake:desk", "--command", "request-recovery", "--data-dir"])
        .arg(&data)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(submit.status.code(), Some(3), "{}", String::from_utf8_lossy(&submit.stderr));
    assert!(String::from_utf8_lossy(&submit.stderr).contains("belongs to a NATS deployment"));
    assert!(!data.join("log.db").exists(), "a local log was created beside the NATS deployment's projection");
}

// Proves issue 17's reads for reviewers and operators of a live NATS deployment, through the binary and with no
// access to the service's data directory: a reviewer's key lists the review queue, shows a case's evidence packet and
// approves with the hash taken from it, and reads the case's history with each decision taken again; an operator's
// key shows the case, lists cases, and has the live service audit its projection and verify every decision
// (`audit verify`, `replay --verify`), while a rebuild is refused as the server's; the reviewer may not audit; the
// same commands with a desk's key are refused by the service (exit 1), and a read over NATS without a key is a usage
// error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reviewer_works_the_queue_over_nats_without_the_data_directory() {
    let directory = scratch();
    let young = common::threats::time_ago(86_400_000);
    let account = common::threats::account("acct-2", &[("acct-2-mail", "email", "acct-2@example.com", &young)]);
    let (broker, _serve, data) = deployment(directory.path(), json!([account]));
    let url = broker.url.as_str();
    let desk = connect(url, Some(&broker.seeds.join("intake.desk.nk"))).await.unwrap();
    let request = request_body("cmd-2", "acct-2", reset_password(), "customer lost everything", json!({}));
    let answer =
        desk.command("airlock.intake.intake.desk.request_recovery", "airlock.result.intake.desk", request).await;
    let case_id = answer["case_id"].as_str().unwrap().to_string();

    // Elsewhere than the server: an empty working directory, only the keys.
    let elsewhere = directory.path().join("reviewer-laptop");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let run = |key: &str, args: &[&str]| {
        let key = broker.seeds.join(key);
        Command::new(env!("CARGO_BIN_EXE_airlock"))
            .args(args)
            .args(["--nats", url, "--nats-nkey", key.to_str().unwrap()])
            .current_dir(&elsewhere)
            .env_remove("AIRLOCK_DATA_DIR")
            .output()
            .unwrap()
    };
    let queue = {
        let mut queue = Value::Null;
        common::wait_for(
            || {
                let output = run("reviewer.ana.nk", &["review", "list", "--json"]);
                queue = serde_json::from_slice::<Value>(&output.stdout).unwrap_or(Value::Null)["items"].clone();
                queue.as_array().is_some_and(|items| !items.is_empty())
            },
            "the case in the review queue, read over NATS",
        );
        queue
    };
    assert_eq!(queue[0]["case_id"], case_id.as_str(), "{queue}");
    let shown = run("reviewer.ana.nk", &["review", "show", &case_id, "--json"]);
    assert_eq!(shown.status.code(), Some(0), "{}", String::from_utf8_lossy(&shown.stderr));
    let packet: Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert!(packet["blocking_rules"].to_string().contains("NoEligibleFactor"), "{packet}");
    // What airlock knows, not what the requester wrote: the one email is a day old, so no code could go anywhere,
    // nothing was proven, nobody approved yet, and the email can still be told of a change.
    let account = &packet["account"];
    assert_eq!(account["destinations"][0]["age_days"], 1, "{packet}");
    assert_eq!(account["destinations"][0]["eligible"], false, "{packet}");
    assert_eq!(account["destinations"][0]["kind"], "email", "{packet}");
    assert!(!account["destinations"][0]["masked"].as_str().unwrap().contains("acct-2@"), "{packet}");
    assert_eq!((account["proven"].clone(), account["approved_by"].clone()), (json!([]), json!([])), "{packet}");
    assert_eq!((account["approvals_required"].clone(), account["deliverable"].clone()), (json!(1), json!(true)));
    assert_eq!(account["velocity"]["account_requests_24h"], 0, "the first request of the day: {packet}");
    let hash = packet["action_hash"].as_str().unwrap();
    let approved =
        run("reviewer.ana.nk", &["review", "approve", &case_id, "--action-hash", hash, "--reason", "called back"]);
    assert_eq!(approved.status.code(), Some(0), "{}", String::from_utf8_lossy(&approved.stderr));
    assert!(String::from_utf8_lossy(&approved.stdout).contains("is cooling_off"));

    let mut case = Value::Null;
    common::wait_for(
        || {
            let output = run("operator.ops.nk", &["case", "show", &case_id, "--json"]);
            case = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
            case["status"] == "cooling_off"
        },
        "the operator's case view to show the approval",
    );
    assert_eq!(case["approvers"], json!(["ana"]), "{case}");
    let listed = run("operator.ops.nk", &["case", "list", "--json"]);
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed["items"][0]["case_id"], case_id.as_str(), "{listed}");
    // A query's filter may leave the limit out, as a hand-written client would: the default applies, not zero.
    let reviewer = connect(url, Some(&broker.seeds.join("reviewer.ana.nk"))).await.unwrap();
    let query = json!({ "query": "case_list", "filter": { "status": "cooling_off" } });
    let answer = reviewer.client.request("airlock.query.reviewer.ana", query.to_string().into()).await.unwrap();
    let answer: Value = serde_json::from_slice(&answer.payload).unwrap();
    assert_eq!(answer["items"].as_array().map(Vec::len), Some(1), "{answer}");

    // The case's history from the log, for the reviewer: every event with the state after it, the decision with its
    // facts and policy version, taken again here on those facts.
    let history = run("reviewer.ana.nk", &["case", "history", &case_id, "--json"]);
    assert_eq!(history.status.code(), Some(0), "{}", String::from_utf8_lossy(&history.stderr));
    let history: Value = serde_json::from_slice(&history.stdout).unwrap();
    let events = history["events"].as_array().unwrap();
    assert_eq!(events[0]["event"], "recovery_requested", "{history}");
    assert!(events.iter().any(|event| event["actor"] == "reviewer:ana" && event["status_after"] == "cooling_off"));
    let decided = events.iter().find(|event| !event["decision"].is_null()).expect("a decision in the history");
    assert_eq!(decided["decision"]["retaken"], "same", "{history}");
    assert!(decided["decision"]["facts"].is_object() && decided["decision"]["policy_version"].is_string());
    assert_eq!(history["decisions_differing"], 0, "{history}");
    // The operator's audit and replay verification, run by the live service on its own projection and log.
    for verify in [&["audit", "verify", "--json"][..], &["replay", "--verify", "--json"]] {
        let verified = run("operator.ops.nk", verify);
        let stdout = String::from_utf8_lossy(&verified.stdout);
        assert_eq!(
            verified.status.code(),
            Some(0),
            "{verify:?}: {stdout} {}",
            String::from_utf8_lossy(&verified.stderr)
        );
        let report: Value = serde_json::from_str(&stdout).unwrap();
        let clean = report.get("clean").cloned().unwrap_or(json!(report["differences"] == json!([])));
        assert_eq!(clean, true, "{verify:?}: {report}");
    }
    // The audit's copies of the projection were made beside it, and are gone.
    let left: Vec<_> = std::fs::read_dir(&data)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|entry| entry.file_name().to_string_lossy().starts_with(".airlock-verify-"))
        .collect();
    assert!(left.is_empty(), "the audit left its copies: {left:?}");
    let replayed = run("operator.ops.nk", &["replay", "--verify", "--json"]);
    let report: Value = serde_json::from_slice(&replayed.stdout).unwrap();
    assert!(report["decisions"]["same"].as_u64().unwrap() >= 1, "{report}");
    // Rebuilding reads the log itself, on the server: an operator's key is told so, and nothing is rebuilt.
    let rebuild = run("operator.ops.nk", &["replay"]);
    assert_eq!(rebuild.status.code(), Some(2), "{}", String::from_utf8_lossy(&rebuild.stderr));
    assert!(String::from_utf8_lossy(&rebuild.stderr).contains("airlock's own key"));
    // The audit is the operators': a reviewer's key is refused by the service.
    let refused = run("reviewer.ana.nk", &["audit", "verify"]);
    assert_eq!(refused.status.code(), Some(2), "{}", String::from_utf8_lossy(&refused.stderr));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("not the reviewer role"));

    // The desk's key reads nothing but its own cases' status.
    for args in [
        &["review", "list"][..],
        &["case", "show", &case_id],
        &["case", "list"],
        &["review", "show", &case_id],
        &["case", "history", &case_id],
    ] {
        let refused = run("intake.desk.nk", args);
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert_eq!(refused.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains("not the intake role"), "{args:?}: {stderr}");
    }
    let refused = run("intake.desk.nk", &["audit", "verify"]);
    assert_eq!(refused.status.code(), Some(2), "a refused audit is not a failed one");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("not the intake role"));
    let refused = run("intake.desk.nk", &["review", "list", "--json"]);
    let answer: Value = serde_json::from_slice(&refused.stdout).unwrap();
    assert_eq!(answer["error"]["code"], "role_not_allowed", "{answer}");
    let keyless = Command::new(env!("CARGO_BIN_EXE_airlock")).args(["review", "list", "--nats", url]).output().unwrap();
    assert_eq!(keyless.status.code(), Some(2), "{}", String::from_utf8_lossy(&keyless.stderr));
    assert!(!elsewhere.join("airlock-data").exists(), "a read created a store");
}

/// The live case view an operator's key reads, or `Null` while the service does not answer.
fn live_case(url: &str, key: &str, case_id: &str) -> Value {
    let output = airlock(&["case", "show", case_id, "--json", "--nats", url, "--nats-nkey", key]);
    serde_json::from_slice(&output.stdout).unwrap_or(Value::Null)
}

// Proves issue 17's operator story end to end on a live NATS deployment, through the binary and the nats-py example:
// the example halts and resumes with the operator's key and reads the switch back each time; with the switch pulled,
// two changes whose cooling-off has ended (a restarted `serve` whose clock runs 80 h ahead) stay held and say so;
// resumed, both execute; the operator rolls one back by its id, lists the other with `rollback --match --dry-run`
// (the first no longer listed), and rolls it back with `--match`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_holds_due_changes_releases_them_and_rolls_them_back() {
    let directory = scratch();
    let accounts = json!([email_account("acct-5"), email_account("acct-6")]);
    let (broker, serve, data) = deployment(directory.path(), accounts);
    let ops = broker.seeds.join("operator.ops.nk");
    let (ops, url) = (ops.to_str().unwrap(), broker.url.as_str());

    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/nats/operator_kill_switch.py");
    let output = Command::new("python3").args([example, url, ops, "ops", "drill"]).output().unwrap();
    assert!(output.status.success(), "the operator example failed: {}", String::from_utf8_lossy(&output.stderr));
    let seen: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!((seen["halt"]["status"].clone(), seen["halted_after_halt"].clone()), (json!("halted"), json!(true)));
    assert_eq!(
        (seen["resume"]["status"].clone(), seen["halted_after_resume"].clone()),
        (json!("running"), json!(false))
    );
    assert_eq!(seen["service"]["endpoints"], json!(["airlock.query.*.*"]), "{seen}");

    // Two new destinations at the same domain, each proven by the account's old email: cooling off for 72 h.
    let desk = connect(url, Some(&broker.seeds.join("intake.desk.nk"))).await.unwrap();
    let page = connect(url, Some(&broker.seeds.join("owner.verification-page.nk"))).await.unwrap();
    let mut cases = Vec::new();
    for account in ["acct-5", "acct-6"] {
        let address = format!("{account}-new@mailbox.example");
        let request = request_body(&format!("add-{account}"), account, add_email(&address), "new email", json!({}));
        let answer =
            desk.command("airlock.intake.intake.desk.request_recovery", "airlock.result.intake.desk", request).await;
        let case_id = answer["case_id"].as_str().unwrap().to_string();
        common::wait_for(|| code_sent(&data, &case_id), "the code to reach the outbox");
        let code = common::code_for(&data, &case_id);
        let proof = json!({ "version": 1, "command_id": format!("proof-{account}"), "case_id": case_id, "code": code });
        let answer = page
            .command(
                "airlock.intake.owner.verification-page.submit_proof",
                "airlock.result.owner.verification-page",
                proof,
            )
            .await;
        assert_eq!(answer["status"], "cooling_off", "{answer}");
        cases.push(case_id);
    }

    let halted = airlock(&["halt", "--reason", "incident 43", "--nats", url, "--nats-nkey", ops]);
    assert_eq!(halted.status.code(), Some(0), "{}", String::from_utf8_lossy(&halted.stderr));
    // The same deployment, its clock 80 h on: both cooling-offs are over, and the kill switch holds both changes.
    serve.stop();
    let airlock_seed = broker.seeds.join("airlock.nk");
    let _serve = ServeProcess::start(
        url,
        &data,
        &directory.path().join("serve-later.log"),
        &["--nats-nkey", airlock_seed.to_str().unwrap(), "--integrator", "siem"],
        &[("AIRLOCK_CLOCK_AHEAD", "80h")],
    );
    for case_id in &cases {
        let mut case = Value::Null;
        common::wait_for(
            || {
                case = live_case(url, ops, case_id);
                case["timers"].as_array().is_some_and(|timers| timers.iter().any(|timer| timer["in_ms"] == 0))
            },
            "the restarted service to show the change due",
        );
        assert_eq!(case["status"], "cooling_off", "{case}");
        assert_eq!(case["timers"][0]["held_by_kill_switch"], true, "{case}");
    }
    let resumed = airlock(&["resume", "--reason", "incident 43 closed", "--nats", url, "--nats-nkey", ops]);
    assert_eq!(resumed.status.code(), Some(0), "{}", String::from_utf8_lossy(&resumed.stderr));
    for case_id in &cases {
        common::wait_for(|| live_case(url, ops, case_id)["status"] == "executed", "the released change to execute");
    }

    let one = airlock(&["rollback", &cases[0], "--reason", "attacker's domain", "--nats", url, "--nats-nkey", ops]);
    assert_eq!(one.status.code(), Some(0), "{}", String::from_utf8_lossy(&one.stderr));
    common::wait_for(|| live_case(url, ops, &cases[0])["status"] == "rolled_back", "the case to be rolled back");
    let matching = ["--match", "destination-domain=mailbox.example", "--reason", "campaign", "--json"];
    let keyed = ["--nats", url, "--nats-nkey", ops];
    let listed = airlock(&[&["rollback", "--dry-run"][..], &matching, &keyed].concat());
    assert_eq!(listed.status.code(), Some(0), "{}", String::from_utf8_lossy(&listed.stderr));
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed["cases"].as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed["cases"][0]["case_id"], cases[1].as_str(), "{listed}");
    let rolled = airlock(&[&["rollback"][..], &matching, &keyed].concat());
    assert_eq!(rolled.status.code(), Some(0), "{}", String::from_utf8_lossy(&rolled.stderr));
    common::wait_for(|| live_case(url, ops, &cases[1])["status"] == "rolled_back", "the match to be rolled back");
}
