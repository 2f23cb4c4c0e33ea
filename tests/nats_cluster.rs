//! A three-node NATS JetStream cluster on loopback, routed between its members, with airlock's event stream at
//! replicas 3: one node is killed in the middle of a stream of appends, and every append the cluster acknowledged is
//! still there afterwards, in order.

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
