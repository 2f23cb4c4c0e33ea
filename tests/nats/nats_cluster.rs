//! A three-node NATS JetStream cluster on loopback, routed between its members, with airlock's event stream at
//! replicas 3: one node is killed in the middle of a stream of appends, and every append the cluster acknowledged is
//! still there afterwards, in order. And the operator's view of such a cluster: `airlock serve --replicas 3` started
//! while the cluster is still forming waits for it, and the commands that only read the log (`audit verify`, `replay
//! --verify`, `case history`) open the replicas-3 log as it is.

use crate::common;

use airlock::core::ids::CaseId;
use airlock::log::envelope::Stream;
use airlock::log::jetstream::{JetStreamConfig, JetStreamLog};
use airlock::log::{Appended, EventLog, LogError};
use airlock::nats::server::{ClusterMember, NatsServer, Options, free_port};
use std::time::{Duration, Instant};

const FORMATION_WAIT_MS: u64 = 60_000;

fn scratch() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() { tempfile::tempdir_in(shm).unwrap() } else { tempfile::tempdir().unwrap() }
}

fn start_cluster(directory: &std::path::Path) -> Vec<NatsServer> {
    let routes: Vec<u16> = (0..3).map(|_| free_port().unwrap()).collect();
    (0..3)
        .map(|index| {
            let member = ClusterMember {
                cluster_name: "airlock-test".into(),
                server_name: format!("n{}", index + 1),
                route_port: routes[index],
                peers: routes.clone(),
            };
            let options = Options { port: None, cluster: Some(member) };
            NatsServer::start(&directory.join(format!("n{}", index + 1)), &options).expect("a member starts")
        })
        .collect()
}

/// Opens the replicas-3 log once the cluster has elected its JetStream leader.
async fn open_log(url: &str) -> JetStreamLog {
    let deadline = Instant::now() + Duration::from_millis(FORMATION_WAIT_MS);
    loop {
        let client = airlock::nats::connect(url, "cluster-test").await.unwrap();
        match JetStreamLog::open(client, JetStreamConfig { replicas: 3, ..JetStreamConfig::default() }).await {
            Ok(log) => return log,
            Err(error) => {
                assert!(Instant::now() < deadline, "the cluster never accepted a replicas-3 stream: {error}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// Appends one commit, retrying through a leader election with the same command id (so a retry that had in fact
/// been stored is reported as a duplicate, not stored twice). Returns the sequence the cluster acknowledged.
async fn append_acknowledged(log: &JetStreamLog, stream: &Stream, expected: u64, command: &str) -> u64 {
    let deadline = Instant::now() + Duration::from_millis(FORMATION_WAIT_MS);
    loop {
        match log.append(stream, expected, command, vec![command.as_bytes().to_vec()]).await {
            Ok(Appended::New { first_sequence }) => return first_sequence,
            Ok(Appended::Duplicate) => {
                let entries = read_through_elections(log, stream).await;
                return entries.last().expect("a duplicate means it was stored").sequence;
            }
            Err(LogError::Conflict { .. }) => panic!("{command}: nobody else writes these streams"),
            Err(error) => {
                assert!(Instant::now() < deadline, "{command} never acknowledged: {error}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// Reads a stream, retrying while the cluster answers "temporarily unavailable" (a leader election after the kill):
/// a client of a cluster must, and only what is stored is then compared.
async fn read_through_elections(log: &JetStreamLog, stream: &Stream) -> Vec<airlock::log::Entry> {
    let deadline = Instant::now() + Duration::from_millis(FORMATION_WAIT_MS);
    loop {
        match log.read_stream(stream).await {
            Ok(entries) => return entries,
            Err(error) => {
                assert!(Instant::now() < deadline, "the stream never became readable: {error}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

// Proves no acknowledged event is lost when one of three replicas is killed mid-stream, and that the stream keeps
// accepting appends with the two that remain.
#[tokio::test(flavor = "multi_thread")]
async fn killing_one_node_loses_no_acknowledged_event() {
    let directory = scratch();
    let mut nodes = start_cluster(directory.path());
    let url = nodes.iter().map(NatsServer::url).collect::<Vec<_>>().join(",");
    let log = open_log(&url).await;
    const CASES: usize = 20;
    const COMMITS_PER_CASE: usize = 15;
    let mut acknowledged: Vec<Vec<(u64, String)>> = vec![Vec::new(); CASES];
    for round in 0..COMMITS_PER_CASE {
        if round == COMMITS_PER_CASE / 3 {
            nodes[0].kill();
        }
        for (case, commits) in acknowledged.iter_mut().enumerate() {
            let stream = Stream::Case(CaseId::new(format!("case-{case}")));
            let expected = commits.last().map_or(0, |(sequence, _)| *sequence);
            let command = format!("case-{case}-commit-{round}");
            let sequence = append_acknowledged(&log, &stream, expected, &command).await;
            commits.push((sequence, command));
        }
    }
    for (case, commits) in acknowledged.iter().enumerate() {
        let stream = Stream::Case(CaseId::new(format!("case-{case}")));
        let stored: Vec<(u64, String)> = read_through_elections(&log, &stream)
            .await
            .into_iter()
            .map(|entry| (entry.sequence, String::from_utf8(entry.envelopes[0].clone()).unwrap()))
            .collect();
        assert_eq!(&stored, commits, "case {case}: every acknowledged commit, once, in order");
    }
    let deadline = Instant::now() + Duration::from_millis(FORMATION_WAIT_MS);
    let info = loop {
        match log.stream().get_info().await {
            Ok(info) => break info,
            Err(error) => {
                assert!(Instant::now() < deadline, "stream info never available: {error}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    assert_eq!(info.config.num_replicas, 3);
    assert_eq!(info.state.messages as usize, CASES * COMMITS_PER_CASE);
}

// Proves (issue 15, item 5) that `serve --replicas 3` started the moment a cluster's nodes are launched waits for the
// cluster instead of exiting, and that an operator can audit, verify by replay and read a case's history against the
// replicas-3 log without saying how many replicas it has.
#[tokio::test(flavor = "multi_thread")]
async fn operators_audit_and_rebuild_a_replicas_3_deployment() {
    let directory = scratch();
    let nodes = start_cluster(directory.path());
    let url = nodes.iter().map(NatsServer::url).collect::<Vec<_>>().join(",");
    let data = directory.path().join("data");
    let log = directory.path().join("serve.log");
    let serve = common::serve::ServeProcess::start(&url, &data, &log, &["--replicas", "3"], &[]);

    let client = airlock::nats::connect(&url, "cluster-test").await.unwrap();
    let context = async_nats::jetstream::new(client.clone());
    let request = serde_json::json!({
        "version": 1, "command_id": "c1", "account_id": "nobody",
        "action": { "type": "reset_password" }, "summary": "customer asked", "signals": {}
    });
    let body = serde_json::to_vec(&request).unwrap();
    common::publish(&context, "airlock.intake.intake.desk.request_recovery", "c1", body).await;
    let answers = common::read_all(&client, "AIRLOCK_RESULTS", "airlock.result.intake.desk", 1).await;
    let answer: serde_json::Value = serde_json::from_slice(&answers[0].payload).unwrap();
    let case_id = answer["case_id"].as_str().expect("the request opened a case").to_string();

    let mut events = context.get_stream("AIRLOCK_EVENTS").await.unwrap();
    assert_eq!(events.info().await.unwrap().config.num_replicas, 3);
    common::wait_for(
        || {
            let shown = common::serve::airlock(&data, &["case", "show", &case_id]);
            shown.status.success()
        },
        "the projection to hold the case",
    );
    for command in [
        vec!["audit", "verify", "--nats", &url],
        vec!["replay", "--verify", "--nats", &url],
        vec!["case", "history", &case_id, "--nats", &url],
    ] {
        let output = common::serve::airlock(&data, &command);
        let said = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        assert!(output.status.success(), "{command:?} failed on the replicas-3 log: {said}");
        assert!(!said.contains("replicas"), "{command:?}: {said}");
    }
    assert_eq!(serve.stop().code(), Some(0));
}
