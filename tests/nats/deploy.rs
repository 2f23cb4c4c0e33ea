//! The deployment files cannot rot unnoticed: every NATS configuration airlock ships or generates is accepted by the
//! real nats-server (`-t`), carries the durability setting, and the compose file wires three replicas to airlock.
//! (No container engine runs on the CI machine, so `docker compose up` itself is not exercised here.)

use std::process::Command;

fn root() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn nats_server_accepts(path: &std::path::Path) {
    let output = Command::new(airlock::nats::server::binary()).arg("-t").arg("-c").arg(path).output().unwrap();
    assert!(output.status.success(), "{}: {}", path.display(), String::from_utf8_lossy(&output.stderr));
}

// Proves each shipped cluster configuration is valid, durable (sync_interval: always) and routed to all three nodes.
#[test]
fn shipped_nats_configs_are_valid_and_durable() {
    for node in 1..=3 {
        let path = root().join(format!("deploy/nats/nats-{node}.conf"));
        nats_server_accepts(&path);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("sync_interval: always"), "{}", path.display());
        for peer in 1..=3 {
            assert!(text.contains(&format!("nats-route://nats-{peer}:6222")), "{} lacks a route", path.display());
        }
    }
}

// Proves the configuration airlock writes for the servers it starts itself is valid and durable, alone and clustered.
#[test]
fn generated_nats_configs_are_valid_and_durable() {
    let directory = tempfile::tempdir().unwrap();
    let member = airlock::nats::server::ClusterMember {
        cluster_name: "c".into(),
        server_name: "n1".into(),
        route_port: 16222,
        peers: vec![16222, 16223, 16224],
    };
    for (name, cluster) in [("single", None), ("member", Some(&member))] {
        let text = airlock::nats::server::config(14222, &directory.path().join("js"), cluster);
        assert!(text.contains("sync_interval: always"));
        assert!(text.contains("listen: 127.0.0.1:14222"), "loopback only");
        let path = directory.path().join(format!("{name}.conf"));
        std::fs::write(&path, text).unwrap();
        nats_server_accepts(&path);
    }
}

// Proves the compose file runs three NATS nodes from the shipped configs and airlock at replicas 3 against all three.
#[test]
fn compose_wires_three_replicas_to_airlock() {
    let compose = std::fs::read_to_string(root().join("docker-compose.yml")).unwrap();
    for node in 1..=3 {
        assert!(compose.contains(&format!("./deploy/nats/nats-{node}.conf:/etc/nats/nats.conf")), "nats-{node}");
    }
    assert!(compose.contains("nats://nats-1:4222,nats://nats-2:4222,nats://nats-3:4222"));
    assert!(compose.contains("--replicas") && compose.contains("\"3\""));
}
